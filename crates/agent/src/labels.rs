//! The Docker labels that tie a container to its node, pod and container spec. They are the agent's only memory:
//! after a restart (or kill -9) the agent rebuilds everything it knows about running pods from these labels, so it
//! adopts its containers instead of starting them again.

use std::collections::BTreeMap;

/// The Node the container belongs to. Agents sharing one engine only ever look at their own.
pub const NODE: &str = "berth.node";
/// The Pod's uid: a pod recreated under the same name is a different pod.
pub const POD_UID: &str = "berth.pod.uid";
pub const POD_NAME: &str = "berth.pod.name";
pub const POD_NAMESPACE: &str = "berth.pod.namespace";
/// The container's name in the Pod spec (`POD` for the infra container).
pub const CONTAINER_NAME: &str = "berth.container.name";
/// `infra`, `init` or `app`.
pub const CONTAINER_KIND: &str = "berth.container.kind";
/// How many times this container had been restarted when this instance was created (0 for the first): the
/// `restartCount` of the Pod status, recovered from the newest instance after an agent restart.
pub const ATTEMPT: &str = "berth.container.attempt";

/// The container name of a pod's infra container, as upstream names its sandbox.
pub const INFRA_NAME: &str = "POD";

/// What role a container plays in its pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Holds the pod's network namespace; every other container joins it.
    Infra,
    Init,
    App,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Infra => "infra",
            Kind::Init => "init",
            Kind::App => "app",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "infra" => Some(Kind::Infra),
            "init" => Some(Kind::Init),
            "app" => Some(Kind::App),
            _ => None,
        }
    }
}

/// The labels selecting every container of `node`.
pub fn for_node(node: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(NODE.to_string(), node.to_string())])
}

/// Identity of one pod on one node, as carried in labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub node: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodIdentity {
    /// The labels selecting every container of this pod.
    pub fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (NODE.to_string(), self.node.clone()),
            (POD_UID.to_string(), self.uid.clone()),
        ])
    }

    /// The full label set for one container of this pod.
    pub fn container_labels(&self, container: &str, kind: Kind, attempt: u32) -> BTreeMap<String, String> {
        BTreeMap::from([
            (NODE.to_string(), self.node.clone()),
            (POD_UID.to_string(), self.uid.clone()),
            (POD_NAME.to_string(), self.name.clone()),
            (POD_NAMESPACE.to_string(), self.namespace.clone()),
            (CONTAINER_NAME.to_string(), container.to_string()),
            (CONTAINER_KIND.to_string(), kind.as_str().to_string()),
            (ATTEMPT.to_string(), attempt.to_string()),
        ])
    }

    /// A Docker container name, unique per pod uid, container and attempt, readable in `docker ps`.
    pub fn container_name(&self, container: &str, attempt: u32) -> String {
        let uid: String = self.uid.chars().take(8).collect();
        format!(
            "berth_{}_{}_{}_{}_{}",
            self.namespace, self.name, container, uid, attempt
        )
    }
}

/// The role in a container's labels (`None` for containers not made by a pod worker).
pub fn kind(labels: &BTreeMap<String, String>) -> Option<Kind> {
    labels.get(CONTAINER_KIND).and_then(|k| Kind::parse(k))
}

/// The attempt number in a container's labels (0 when absent or unreadable).
pub fn attempt(labels: &BTreeMap<String, String>) -> u32 {
    labels.get(ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0)
}
