//! The strategic-merge patch-meta table: for each schema node berth knows (a Pod spec, a container, object
//! metadata, …) which fields are lists merged by a key, lists of primitives merged as sets, maps with
//! `retainKeys`, or maps replaced wholesale. Upstream reads this from Go struct tags (`patchStrategy`,
//! `patchMergeKey`) in `k8s.io/api`; berth writes the relevant tags down as data, taken from k8s.io/api v0.35.
//! Any field not listed here is a map merged key by key, or an *atomic* list replaced as a whole (tolerations,
//! command, args, matchExpressions, subsets, …). This file only answers lookups; the merge itself lives in
//! `strategic.rs`.

/// A node of the (partial) schema. `Any` is everything berth has no special rules for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schema {
    /// No list semantics below this point: maps merge, lists are atomic.
    Any,
    /// The top level of an object of the given kind.
    Root(RootKind),
    /// `metav1.ObjectMeta`
    ObjectMeta,
    /// `PodTemplateSpec` (`metadata` + `spec`).
    PodTemplateSpec,
    /// `batch/v1 JobTemplateSpec` (`metadata` + a Job spec).
    JobTemplateSpec,
    /// A spec that holds a pod template: ReplicaSet, ReplicationController, StatefulSet, DaemonSet, Job.
    WorkloadSpec,
    /// `DeploymentSpec`: a workload spec whose `strategy` has `retainKeys`.
    DeploymentSpec,
    /// `CronJobSpec`
    CronJobSpec,
    /// `PodSpec`
    PodSpec,
    /// `Container` (also init and ephemeral containers).
    Container,
    /// `PodStatus`
    PodStatus,
    /// `ServiceSpec`
    ServiceSpec,
    /// `NodeSpec`
    NodeSpec,
    /// `NodeStatus`
    NodeStatus,
    /// `PodDisruptionBudgetSpec`
    PdbSpec,
    /// Any status whose only special field is `conditions` merged by `type`.
    ConditionsStatus,
}

/// The kinds with strategic merge patch support. Custom resources have none (upstream answers 415).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RootKind {
    Pod,
    PodTemplate,
    Workload,
    Deployment,
    CronJob,
    Service,
    Node,
    WithConditions,
    PodDisruptionBudget,
    Plain,
}

/// How a field is patched.
///
/// The two `retainKeys` strategies only document upstream's tags: like upstream's server side, the merge honours a
/// `$retainKeys` directive wherever a patch puts one (the strategy matters to clients that build patches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// No tag: a map merges key by key, a list is replaced whole.
    Default,
    /// `patchStrategy:"merge" patchMergeKey:"<key>"`: a list of maps merged item by item on `key`.
    MergeByKey(&'static str),
    /// `patchStrategy:"merge"` on a list of primitives: set union, `$deleteFromPrimitiveList` removes.
    MergePrimitives,
    /// `patchStrategy:"merge,retainKeys"`: like `MergeByKey`; items honour `$retainKeys`.
    MergeByKeyRetainKeys(&'static str),
    /// `patchStrategy:"retainKeys"` on a map: honours `$retainKeys` (switching a union member).
    RetainKeys,
    /// `patchStrategy:"replace"` on a map: the patch value replaces it whole.
    Replace,
}

impl Strategy {
    /// The merge key of a merged list of maps.
    pub(crate) fn merge_key(self) -> Option<&'static str> {
        match self {
            Strategy::MergeByKey(k) | Strategy::MergeByKeyRetainKeys(k) => Some(k),
            _ => None,
        }
    }

    /// Whether a list under this strategy is merged rather than replaced.
    pub(crate) fn merges_lists(self) -> bool {
        matches!(
            self,
            Strategy::MergeByKey(_) | Strategy::MergeByKeyRetainKeys(_) | Strategy::MergePrimitives
        )
    }
}

/// One row of the table: in a `parent` node, `field` has this `strategy` and its value (or list items) have
/// schema `child`.
struct Row {
    parent: Schema,
    field: &'static str,
    child: Schema,
    strategy: Strategy,
}

const fn row(parent: Schema, field: &'static str, child: Schema, strategy: Strategy) -> Row {
    Row {
        parent,
        field,
        child,
        strategy,
    }
}

use Schema as S;
use Strategy::{Default, MergeByKey, MergeByKeyRetainKeys, MergePrimitives, Replace, RetainKeys};

/// The patch-meta table (see the file comment). Order does not matter; (parent, field) pairs are unique.
static TABLE: &[Row] = &[
    // metav1.ObjectMeta
    row(S::ObjectMeta, "ownerReferences", S::Any, MergeByKey("uid")),
    row(S::ObjectMeta, "finalizers", S::Any, MergePrimitives),
    // Templates.
    row(S::PodTemplateSpec, "metadata", S::ObjectMeta, Default),
    row(S::PodTemplateSpec, "spec", S::PodSpec, Default),
    row(S::JobTemplateSpec, "metadata", S::ObjectMeta, Default),
    row(S::JobTemplateSpec, "spec", S::WorkloadSpec, Default),
    row(S::WorkloadSpec, "template", S::PodTemplateSpec, Default),
    row(S::DeploymentSpec, "template", S::PodTemplateSpec, Default),
    row(S::DeploymentSpec, "strategy", S::Any, RetainKeys),
    row(S::CronJobSpec, "jobTemplate", S::JobTemplateSpec, Default),
    // core/v1 PodSpec
    row(S::PodSpec, "containers", S::Container, MergeByKey("name")),
    row(S::PodSpec, "initContainers", S::Container, MergeByKey("name")),
    row(S::PodSpec, "ephemeralContainers", S::Container, MergeByKey("name")),
    row(S::PodSpec, "volumes", S::Any, MergeByKeyRetainKeys("name")),
    row(S::PodSpec, "imagePullSecrets", S::Any, MergeByKey("name")),
    row(S::PodSpec, "hostAliases", S::Any, MergeByKey("ip")),
    row(
        S::PodSpec,
        "topologySpreadConstraints",
        S::Any,
        MergeByKey("topologyKey"),
    ),
    row(S::PodSpec, "schedulingGates", S::Any, MergeByKey("name")),
    row(S::PodSpec, "resourceClaims", S::Any, MergeByKeyRetainKeys("name")),
    // core/v1 Container
    row(S::Container, "ports", S::Any, MergeByKey("containerPort")),
    row(S::Container, "env", S::Any, MergeByKey("name")),
    row(S::Container, "volumeMounts", S::Any, MergeByKey("mountPath")),
    row(S::Container, "volumeDevices", S::Any, MergeByKey("devicePath")),
    // core/v1 PodStatus
    row(S::PodStatus, "conditions", S::Any, MergeByKey("type")),
    row(S::PodStatus, "podIPs", S::Any, MergeByKey("ip")),
    row(S::PodStatus, "hostIPs", S::Any, MergeByKey("ip")),
    row(
        S::PodStatus,
        "resourceClaimStatuses",
        S::Any,
        MergeByKeyRetainKeys("name"),
    ),
    // core/v1 Service, Node
    row(S::ServiceSpec, "ports", S::Any, MergeByKey("port")),
    row(S::NodeSpec, "podCIDRs", S::Any, MergePrimitives),
    row(S::NodeStatus, "conditions", S::Any, MergeByKey("type")),
    row(S::NodeStatus, "addresses", S::Any, MergeByKey("type")),
    // policy/v1 PodDisruptionBudgetSpec: a new selector replaces the old one instead of merging with it.
    row(S::PdbSpec, "selector", S::Any, Replace),
    // Service/Namespace/Deployment/ReplicaSet/StatefulSet/DaemonSet/Job/RC/PDB/HPA/PVC status.
    row(S::ConditionsStatus, "conditions", S::Any, MergeByKey("type")),
];

/// The schema of a top-level field (`metadata`, `spec`, `status`, `template`) of a root kind; `Any` for a field
/// with no special rules.
fn root_field(kind: RootKind, field: &str) -> Schema {
    use RootKind as K;
    match (kind, field) {
        (_, "metadata") => S::ObjectMeta,
        (K::Pod, "spec") => S::PodSpec,
        (K::Pod, "status") => S::PodStatus,
        (K::PodTemplate, "template") => S::PodTemplateSpec,
        (K::Workload, "spec") => S::WorkloadSpec,
        (K::Deployment, "spec") => S::DeploymentSpec,
        (K::CronJob, "spec") => S::CronJobSpec,
        (K::Service, "spec") => S::ServiceSpec,
        (K::Node, "spec") => S::NodeSpec,
        (K::Node, "status") => S::NodeStatus,
        (K::PodDisruptionBudget, "spec") => S::PdbSpec,
        (K::Workload | K::Deployment | K::Service | K::WithConditions | K::PodDisruptionBudget, "status") => {
            S::ConditionsStatus
        }
        _ => S::Any,
    }
}

/// The root schema for a kind, or `None` when berth has no strategic-merge support for it.
pub(crate) fn root(kind: &str) -> Option<Schema> {
    use RootKind as K;
    let root = match kind {
        "Pod" => K::Pod,
        "PodTemplate" => K::PodTemplate,
        "ReplicaSet" | "ReplicationController" | "StatefulSet" | "DaemonSet" | "Job" => K::Workload,
        "Deployment" => K::Deployment,
        "CronJob" => K::CronJob,
        "Service" => K::Service,
        "Node" => K::Node,
        "Namespace" | "PersistentVolumeClaim" | "HorizontalPodAutoscaler" => K::WithConditions,
        "PodDisruptionBudget" => K::PodDisruptionBudget,
        "ConfigMap" | "Secret" | "Endpoints" | "EndpointSlice" | "Event" | "Lease" | "ServiceAccount"
        | "PersistentVolume" | "LimitRange" | "ResourceQuota" | "PriorityClass" => K::Plain,
        _ => return None,
    };
    Some(Schema::Root(root))
}

/// Whether [`super::strategic_merge_patch`] supports `kind` (otherwise the server should answer 415).
pub fn supports_strategic_merge(kind: &str) -> bool {
    root(kind).is_some()
}

/// Looks up `field` inside a node: the child's schema and the field's strategy.
pub(crate) fn lookup(parent: Schema, field: &str) -> (Schema, Strategy) {
    if let Schema::Root(kind) = parent {
        return (root_field(kind, field), Default);
    }
    TABLE
        .iter()
        .find(|r| r.parent == parent && r.field == field)
        .map_or((Schema::Any, Default), |r| (r.child, r.strategy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_templates_resolve_to_pod_spec_and_object_meta() {
        let Some(deploy) = root("Deployment") else {
            panic!("Deployment is supported")
        };
        let (spec, _) = lookup(deploy, "spec");
        let (template, _) = lookup(spec, "template");
        assert_eq!(lookup(template, "spec").0, Schema::PodSpec);
        assert_eq!(lookup(template, "metadata").0, Schema::ObjectMeta);
        assert_eq!(
            lookup(Schema::PodSpec, "containers"),
            (Schema::Container, MergeByKey("name"))
        );
        assert_eq!(lookup(spec, "strategy").1, RetainKeys);
    }

    #[test]
    fn unlisted_fields_are_atomic_and_unknown_kinds_unsupported() {
        assert_eq!(lookup(Schema::PodSpec, "tolerations"), (Schema::Any, Default));
        assert_eq!(lookup(Schema::Container, "command"), (Schema::Any, Default));
        assert!(!supports_strategic_merge("Widget"));
        assert!(supports_strategic_merge("Lease"));
    }

    #[test]
    fn table_rows_are_unique() {
        for (i, a) in TABLE.iter().enumerate() {
            for b in &TABLE[i + 1..] {
                assert!(
                    !(a.parent == b.parent && a.field == b.field),
                    "duplicate row {:?}.{}",
                    a.parent,
                    a.field
                );
            }
        }
    }
}
