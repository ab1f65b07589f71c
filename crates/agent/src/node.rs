//! The agent's Node: registering it, and proving the node is alive.
//!
//! Like the kubelet, the agent creates its Node (or adopts an existing one of the same name, keeping its spec:
//! cordons and taints survive an agent restart), posts the Node status — addresses, capacity, the ten `nodeInfo`
//! fields and the Ready condition — and renews a Lease in `kube-node-lease` every 10 s. The Lease is the cheap
//! heartbeat controllers watch; the status is re-posted less often. Never touches containers.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::config::AgentConfig;
use crate::server::CERT_ANNOTATION;
use crate::AgentError;
use berth_runtime::RuntimeVersion;

/// The version the agent reports as `kubeletVersion` (the VERSION column of `kubectl get nodes`).
pub const KUBELET_VERSION: &str = "v1.35.0+berth";
/// Upstream's default pod capacity per node.
const MAX_PODS: &str = "110";
/// The Lease's duration; the node controller calls a node gone after this long without renewal.
const LEASE_DURATION_SECONDS: i32 = 40;

/// What the agent knows about itself when it registers.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    pub runtime: RuntimeVersion,
    /// Port of the agent's HTTPS endpoint.
    pub port: u16,
    /// SHA-256 (hex) of the agent's serving certificate.
    pub cert_sha256: String,
}

/// The Node's labels: upstream's well-known ones plus the configured extras.
pub fn node_labels(config: &AgentConfig, facts: &NodeFacts) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), config.node_name.clone()),
        ("kubernetes.io/os".to_string(), facts.runtime.operating_system.clone()),
        ("kubernetes.io/arch".to_string(), facts.runtime.architecture.clone()),
        (
            "beta.kubernetes.io/os".to_string(),
            facts.runtime.operating_system.clone(),
        ),
        (
            "beta.kubernetes.io/arch".to_string(),
            facts.runtime.architecture.clone(),
        ),
    ]);
    labels.extend(config.node_labels.clone());
    labels
}

/// Creates the Node, or brings an existing one's labels and annotations up to date, then posts its status.
pub async fn register(client: &kube::Client, config: &AgentConfig, facts: &NodeFacts) -> Result<(), AgentError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let labels = node_labels(config, facts);
    let annotations = BTreeMap::from([(CERT_ANNOTATION.to_string(), facts.cert_sha256.clone())]);
    let node = Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(labels.clone()),
            annotations: Some(annotations.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %config.node_name, "registered node"),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let patch = json!({"metadata": {"labels": labels, "annotations": annotations}});
            nodes
                .patch(&config.node_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|source| AgentError::Api {
                    step: "updating the existing node",
                    source,
                })?;
            tracing::info!(node = %config.node_name, "adopted existing node");
        }
        Err(source) => {
            return Err(AgentError::Api {
                step: "registering the node",
                source,
            })
        }
    }
    post_status(client, config, facts).await
}

/// Posts the Node status: Ready, addresses, capacity and node info.
pub async fn post_status(client: &kube::Client, config: &AgentConfig, facts: &NodeFacts) -> Result<(), AgentError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let existing = nodes
        .get_status(&config.node_name)
        .await
        .map_err(|source| AgentError::Api {
            step: "reading the node status",
            source,
        })?;
    let status = node_status(config, facts, existing.status.as_ref());
    nodes
        .patch_status(
            &config.node_name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await
        .map_err(|source| AgentError::Api {
            step: "posting the node status",
            source,
        })?;
    Ok(())
}

/// The Node status the agent reports. A condition keeps its `lastTransitionTime` while its status is unchanged.
pub fn node_status(config: &AgentConfig, facts: &NodeFacts, previous: Option<&NodeStatus>) -> serde_json::Value {
    let now = crate::time::now();
    let conditions: Vec<serde_json::Value> = [
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        (
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        (
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
    ]
    .into_iter()
    .map(|(type_, status, reason, message)| {
        let since = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == status))
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": since})
    })
    .collect();
    let memory_kib = facts.runtime.memory_bytes / 1024;
    let resources =
        json!({"cpu": facts.runtime.cpus.to_string(), "memory": format!("{memory_kib}Ki"), "pods": MAX_PODS});
    let machine_id = read_trimmed("/etc/machine-id");
    let system_uuid = Some(read_trimmed("/sys/class/dmi/id/product_uuid"))
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| machine_id.clone());
    json!({
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": config.node_ip.to_string()},
            {"type": "Hostname", "address": config.node_name},
        ],
        "capacity": resources,
        "allocatable": resources,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": facts.port}},
        "nodeInfo": {
            "machineID": machine_id,
            "systemUUID": system_uuid,
            "bootID": read_trimmed("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": facts.runtime.kernel_version,
            "osImage": facts.runtime.os_image,
            "containerRuntimeVersion": facts.runtime.runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": facts.runtime.operating_system,
            "architecture": facts.runtime.architecture,
        },
    })
}

/// Renews (or creates) the Node's Lease in `kube-node-lease`.
pub async fn renew_lease(client: &kube::Client, node: &str) -> Result<(), AgentError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = crate::time::now_micro();
    let patch =
        json!({"spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now}});
    match leases.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            let nodes: Api<Node> = Api::all(client.clone());
            let node_uid = nodes.get_metadata(node).await.ok().and_then(|n| n.metadata.uid);
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node.to_string()),
                    namespace: Some("kube-node-lease".to_string()),
                    // Owned by the Node, as upstream does, so deleting the Node removes its Lease.
                    owner_references: node_uid.map(|uid| {
                        vec![OwnerReference {
                            api_version: "v1".to_string(),
                            kind: "Node".to_string(),
                            name: node.to_string(),
                            uid: uid.to_string(),
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(node.to_string()),
                    lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map(|_| ())
                .map_err(|source| AgentError::Api {
                    step: "creating the node lease",
                    source,
                })
        }
        Err(source) => Err(AgentError::Api {
            step: "renewing the node lease",
            source,
        }),
    }
}

/// Keeps the Lease renewed and the status fresh until `shutdown` resolves. Failures are logged and retried on the
/// next tick: a flaky API server must not stop the agent.
pub async fn heartbeat(
    client: kube::Client,
    config: AgentConfig,
    facts: NodeFacts,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut lease_tick = tokio::time::interval(config.lease_renew_interval);
    let mut status_tick = tokio::time::interval(config.node_status_interval);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = lease_tick.tick() => {
                if let Err(error) = renew_lease(&client, &config.node_name).await {
                    tracing::warn!(%error, "lease renewal failed");
                }
            }
            _ = status_tick.tick() => {
                if let Err(error) = post_status(&client, &config, &facts).await {
                    tracing::warn!(%error, "node status update failed");
                }
            }
        }
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
