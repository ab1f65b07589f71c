//! The table of kinds berth serves. Discovery, OpenAPI, routing and storage keys are all derived from it, so
//! adding a kind is adding a row here (plus its defaulting, validation and printing).

/// Whether objects of a kind live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Objects live in a namespace (`/namespaces/{ns}/{plural}/{name}`).
    Namespaced,
    /// Objects are cluster-wide (`/{plural}/{name}`).
    Cluster,
}

/// A subresource of a kind, as listed in discovery (`pods/status`, `deployments/scale`, ...).
#[derive(Debug, Clone, Copy)]
pub struct Subresource {
    /// The path segment after the object name.
    pub name: &'static str,
    /// The group of the object the subresource takes and returns, when it differs from the parent's.
    pub group: Option<&'static str>,
    /// The version of that object, when it differs.
    pub version: Option<&'static str>,
    /// The kind the subresource takes and returns.
    pub kind: &'static str,
    /// The verbs discovery advertises.
    pub verbs: &'static [&'static str],
}

/// One served resource: a (group, version, kind) with its REST names.
#[derive(Debug)]
pub struct ResourceInfo {
    /// API group; `""` for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// The kind, e.g. `Deployment`.
    pub kind: &'static str,
    /// The plural resource name used in URLs, e.g. `deployments`.
    pub plural: &'static str,
    /// The singular name, e.g. `deployment`.
    pub singular: &'static str,
    /// Namespaced or cluster-scoped.
    pub scope: Scope,
    /// Short names kubectl accepts (`deploy`).
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Verbs on the resource itself.
    pub verbs: &'static [&'static str],
    /// Subresources served.
    pub subresources: &'static [Subresource],
    /// Whether the kind has a `/status` subresource, so that the main endpoint ignores status changes and the
    /// status endpoint ignores everything but status (upstream's "status strategy").
    pub has_status: bool,
}

/// The eight verbs of an ordinary resource.
pub const FULL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

const fn status(kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group: None,
        version: None,
        kind,
        verbs: STATUS_VERBS,
    }
}
const fn scale() -> Subresource {
    Subresource {
        name: "scale",
        group: Some("autoscaling"),
        version: Some("v1"),
        kind: "Scale",
        verbs: STATUS_VERBS,
    }
}

/// Every resource berth serves, in discovery order (core first, then the named groups).
pub static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        scope: Scope::Cluster,
        short_names: &["ns"],
        categories: &[],
        verbs: &["create", "delete", "get", "list", "patch", "update", "watch"],
        subresources: &[
            status("Namespace"),
            Subresource {
                name: "finalize",
                group: None,
                version: None,
                kind: "Namespace",
                verbs: &["update"],
            },
        ],
        has_status: true,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        scope: Scope::Namespaced,
        short_names: &["po"],
        categories: &["all"],
        verbs: FULL_VERBS,
        subresources: &[
            status("Pod"),
            Subresource {
                name: "binding",
                group: None,
                version: None,
                kind: "Binding",
                verbs: &["create"],
            },
            Subresource {
                name: "log",
                group: None,
                version: None,
                kind: "Pod",
                verbs: &["get"],
            },
            // Upstream lists exec as PodExecOptions with create (SPDY's POST) and get (the WebSocket upgrade).
            Subresource {
                name: "exec",
                group: None,
                version: None,
                kind: "PodExecOptions",
                verbs: &["create", "get"],
            },
            // Likewise attach, as PodAttachOptions.
            Subresource {
                name: "attach",
                group: None,
                version: None,
                kind: "PodAttachOptions",
                verbs: &["create", "get"],
            },
            // And port-forward, as PodPortForwardOptions.
            Subresource {
                name: "portforward",
                group: None,
                version: None,
                kind: "PodPortForwardOptions",
                verbs: &["create", "get"],
            },
        ],
        has_status: true,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        scope: Scope::Namespaced,
        short_names: &["svc"],
        categories: &["all"],
        verbs: FULL_VERBS,
        subresources: &[status("Service")],
        has_status: true,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        scope: Scope::Namespaced,
        short_names: &["ep"],
        categories: &[],
        verbs: FULL_VERBS,
        subresources: &[],
        has_status: false,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        scope: Scope::Namespaced,
        short_names: &["cm"],
        categories: &[],
        verbs: FULL_VERBS,
        subresources: &[],
        has_status: false,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        scope: Scope::Namespaced,
        short_names: &[],
        categories: &[],
        verbs: FULL_VERBS,
        subresources: &[],
        has_status: false,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        scope: Scope::Cluster,
        short_names: &["no"],
        categories: &[],
        verbs: FULL_VERBS,
        subresources: &[status("Node")],
        has_status: true,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        scope: Scope::Namespaced,
        short_names: &["ev"],
        categories: &[],
        verbs: FULL_VERBS,
        subresources: &[],
        has_status: false,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "ReplicationController",
        plural: "replicationcontrollers",
        singular: "replicationcontroller",
        scope: Scope::Namespaced,
        short_names: &["rc"],
        categories: &["all"],
        verbs: FULL_VERBS,
        subresources: &[status("ReplicationController"), scale()],
        has_status: true,
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        scope: Scope::Namespaced,
        short_names: &["deploy"],
        categories: &["all"],
        verbs: FULL_VERBS,
        subresources: &[status("Deployment"), scale()],
        has_status: true,
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        scope: Scope::Namespaced,
        short_names: &["rs"],
        categories: &["all"],
        verbs: FULL_VERBS,
        subresources: &[status("ReplicaSet"), scale()],
        has_status: true,
    },
    ResourceInfo {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        scope: Scope::Namespaced,
        short_names: &[],
        categories: &[],
        verbs: FULL_VERBS,
        subresources: &[],
        has_status: false,
    },
    ResourceInfo {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        scope: Scope::Namespaced,
        short_names: &[],
        categories: &[],
        verbs: FULL_VERBS,
        subresources: &[],
        has_status: false,
    },
];

impl ResourceInfo {
    /// `v1` for the core group, `apps/v1` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The resource name qualified by its group, as upstream's error messages print it: `pods`,
    /// `deployments.apps`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kind qualified by its group, as upstream's Invalid messages print it: `Pod`, `Deployment.apps`.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// The subresource with this name, if served.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

/// Looks a resource up by group, version and plural name, as found in a URL.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Looks a resource up by its `apiVersion` and `kind`, as found in an object.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// The group versions served, in discovery order, with the core `v1` first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}
