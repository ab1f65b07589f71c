//! Translation of a Pod's container spec into a runtime [`ContainerConfig`]: upstream's command/args override
//! rules, resources, security context, volume mounts and the pod's shared network namespace.
//!
//! Pure functions: the environment and the volumes' host paths are resolved by the caller.

use std::collections::BTreeMap;

use berth_api::validation::quantity::Quantity;
use berth_runtime::{ContainerConfig, Mount, NetworkMode, PortBinding};
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::labels::{Kind, PodIdentity, INFRA_NAME};
use crate::pods::env::expand;

/// What a container needs besides its spec.
pub struct ContainerPlan<'a> {
    pub identity: &'a PodIdentity,
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub kind: Kind,
    pub attempt: u32,
    /// The infra container whose network namespace the container joins.
    pub infra_id: &'a str,
    /// The resolved environment.
    pub env: Vec<(String, String)>,
    /// Host directory of each pod volume, by volume name.
    pub volumes: &'a BTreeMap<String, VolumePath>,
    /// The prepared subPath mount target of each of the container's mounts that has a subPath (see
    /// [`sub_paths`]), by mount index. Docker gets these paths, never a path inside a volume.
    pub sub_paths: &'a BTreeMap<usize, String>,
    pub allow_privileged: bool,
}

/// Where a pod volume lives on the host, and whether it must be mounted read-only whatever the mount says.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumePath {
    pub host_path: String,
    pub always_read_only: bool,
}

/// The runtime config for an init or app container. Errors are `CreateContainerConfigError` messages.
pub fn container_config(plan: ContainerPlan<'_>) -> Result<ContainerConfig, String> {
    let c = plan.container;
    let pod_security = plan.pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let security = c.security_context.as_ref();
    let privileged = security.and_then(|s| s.privileged).unwrap_or(false);
    if privileged && !plan.allow_privileged {
        return Err(
            "privileged containers are not allowed on this node (start the agent with --allow-privileged)".to_string(),
        );
    }
    // `command` replaces the image's ENTRYPOINT and `args` its CMD; `$(VAR)` in either is expanded from the
    // container's environment. With `command` set and no `args`, the image's CMD is not used (Docker drops it
    // whenever the entrypoint is overridden, which is exactly upstream's rule).
    let entrypoint = c
        .command
        .as_ref()
        .map(|cmd| cmd.iter().map(|a| expand(a, &plan.env)).collect());
    let cmd = c
        .args
        .as_ref()
        .map(|args| args.iter().map(|a| expand(a, &plan.env)).collect());
    let run_as_user = security
        .and_then(|s| s.run_as_user)
        .or(pod_security.and_then(|s| s.run_as_user));
    let run_as_group = security
        .and_then(|s| s.run_as_group)
        .or(pod_security.and_then(|s| s.run_as_group));
    let user = match (run_as_user, run_as_group) {
        (Some(u), Some(g)) => Some(format!("{u}:{g}")),
        (Some(u), None) => Some(u.to_string()),
        (None, Some(g)) => Some(format!("0:{g}")),
        (None, None) => None,
    };
    let mut mounts = Vec::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let volume = plan
            .volumes
            .get(&m.name)
            .ok_or_else(|| format!("cannot find volume {:?} to mount into container {:?}", m.name, c.name))?;
        let host_path = match plan.sub_paths.get(&i) {
            Some(target) => target.clone(),
            // Never fall back to joining the subPath onto the volume path: Docker would follow symlinks a
            // container planted there (see `subpath`).
            None if has_sub_path(m) => {
                return Err(format!(
                    "subPath of volumeMount {:?} of container {:?} was not prepared",
                    m.name, c.name
                ));
            }
            None => volume.host_path.clone(),
        };
        mounts.push(Mount {
            host_path,
            container_path: m.mount_path.clone(),
            read_only: volume.always_read_only || m.read_only.unwrap_or(false),
        });
    }
    let (memory_limit, nano_cpus, cpu_shares) = resources(c);
    Ok(ContainerConfig {
        name: plan.identity.container_name(&c.name, plan.attempt),
        image: c.image.clone().unwrap_or_default(),
        entrypoint,
        cmd,
        env: plan.env,
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        labels: plan.identity.container_labels(&c.name, plan.kind, plan.attempt),
        network: NetworkMode::Container {
            id: plan.infra_id.to_string(),
        },
        mounts,
        memory_limit,
        nano_cpus,
        cpu_shares,
        user,
        read_only_root_fs: security.and_then(|s| s.read_only_root_filesystem).unwrap_or(false),
        privileged,
        // Dropping capabilities only ever reduces privilege, so it is honoured; adding them is refused by the API
        // server until access control can decide who may (see the validation of `capabilities.add`).
        cap_drop: security
            .and_then(|s| s.capabilities.as_ref())
            .and_then(|caps| caps.drop.clone())
            .unwrap_or_default(),
        // The kubelet sets no_new_privs only when the field is explicitly false (unset means "allowed", since a
        // privileged or CAP_SYS_ADMIN container needs it), and so does berth.
        no_new_privileges: security.and_then(|s| s.allow_privilege_escalation) == Some(false),
        tty: c.tty.unwrap_or(false),
        open_stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin.unwrap_or(false) && c.stdin_once.unwrap_or(false),
        port_bindings: Vec::new(),
    })
}

/// The subPath of each of `c`'s volume mounts that has one, by mount index: `subPath` as written, or
/// `subPathExpr` with `$(VAR)` expanded from the container's environment (upstream's
/// `ExpandContainerVolumeMounts`: a variable that is unset or empty is an error, not an empty path segment).
/// Absolute paths and `..` are refused here with the kubelet's messages, before anything touches the disk; the
/// API server refuses them too, but a subPathExpr can only be checked once expanded. Errors are
/// `CreateContainerConfigError` messages.
pub fn sub_paths(c: &Container, env: &[(String, String)]) -> Result<Vec<(usize, String)>, String> {
    let mut out = Vec::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let sub_path = match (m.sub_path.as_deref(), m.sub_path_expr.as_deref()) {
            (Some(p), _) if !p.is_empty() => p.to_string(),
            (_, Some(expr)) if !expr.is_empty() => {
                let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
                let expanded = crate::pods::env::expand_with(expr, |name| {
                    let value = env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
                    if value.as_deref().is_none_or(str::is_empty) {
                        missing.borrow_mut().insert(name.to_string());
                    }
                    Some(value.unwrap_or_default())
                });
                let missing = missing.into_inner();
                if !missing.is_empty() {
                    return Err(format!(
                        "missing value for {}",
                        missing.into_iter().collect::<Vec<_>>().join(", ")
                    ));
                }
                expanded
            }
            _ => continue,
        };
        if sub_path.starts_with('/') {
            return Err(format!("error SubPath `{sub_path}` must not be an absolute path"));
        }
        if sub_path.split('/').any(|part| part == "..") {
            return Err(format!(
                "unable to provision SubPath `{sub_path}`: must not contain '..'"
            ));
        }
        out.push((i, sub_path));
    }
    Ok(out)
}

fn has_sub_path(m: &k8s_openapi::api::core::v1::VolumeMount) -> bool {
    m.sub_path.as_deref().is_some_and(|p| !p.is_empty()) || m.sub_path_expr.as_deref().is_some_and(|p| !p.is_empty())
}

/// The infra container: holds the pod's network namespace (and hostname) for as long as the pod lives, so app
/// containers can restart without the pod changing address. Host ports of all containers are published on it.
pub fn infra_config(identity: &PodIdentity, pod: &Pod, network: &str, image: &str, attempt: u32) -> ContainerConfig {
    let spec = pod.spec.as_ref();
    let hostname: String = spec
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
        .chars()
        .take(63)
        .collect();
    let port_bindings = spec
        .map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .into_iter()
        .flatten()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?;
            Some(PortBinding {
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()).to_lowercase(),
                host_port,
                host_ip: p.host_ip.clone().filter(|ip| !ip.is_empty()),
            })
        })
        .collect();
    ContainerConfig {
        name: identity.container_name(INFRA_NAME, attempt),
        image: image.to_string(),
        cmd: Some(vec!["pause".to_string()]),
        labels: identity.container_labels(INFRA_NAME, Kind::Infra, attempt),
        network: NetworkMode::Bridge {
            network: network.to_string(),
            hostname,
        },
        port_bindings,
        ..Default::default()
    }
}

/// Memory limit (bytes), CPU limit (nano-CPUs) and CPU weight (shares) from the container's resources, mapped the
/// way the kubelet maps them onto cgroups: shares = request in millicores × 1024 / 1000, at least 2.
fn resources(c: &Container) -> (Option<i64>, Option<i64>, Option<i64>) {
    let get = |section: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
               name: &str| { section.and_then(|m| m.get(name)).and_then(|q| Quantity::parse(&q.0)) };
    let resources = c.resources.as_ref();
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let memory = get(limits, "memory").map(|q| i64::try_from(q.nanos / 1_000_000_000).unwrap_or(i64::MAX));
    let nano_cpus = get(limits, "cpu").map(|q| i64::try_from(q.nanos).unwrap_or(i64::MAX));
    let shares = get(requests, "cpu").map(|q| {
        let milli = i64::try_from(q.nanos / 1_000_000).unwrap_or(i64::MAX);
        (milli.saturating_mul(1024) / 1000).max(2)
    });
    (memory, nano_cpus, shares)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(container: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "0123456789abcdef"},
            "spec": {"containers": [container]}
        }))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, c)
    }

    fn config(container: serde_json::Value) -> Result<ContainerConfig, String> {
        let (pod, c) = pod(container);
        let identity = PodIdentity {
            node: "n1".into(),
            namespace: "default".into(),
            name: "web".into(),
            uid: "0123456789abcdef".into(),
        };
        let volumes = BTreeMap::from([(
            "cfg".to_string(),
            VolumePath {
                host_path: "/data/cfg".to_string(),
                always_read_only: true,
            },
        )]);
        container_config(ContainerPlan {
            identity: &identity,
            pod: &pod,
            container: &c,
            kind: Kind::App,
            attempt: 2,
            infra_id: "infra",
            env: vec![("GREETING".into(), "hi".into())],
            volumes: &volumes,
            sub_paths: &BTreeMap::from([(1, "/data/pods/u/volume-subpaths/cfg/app/1".to_string())]),
            allow_privileged: false,
        })
    }

    #[test]
    fn sub_path_mounts_use_the_prepared_target_never_a_path_inside_the_volume() {
        let c = config(serde_json::json!({"name": "app", "image": "i:1", "volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/cfg"},
            {"name": "cfg", "mountPath": "/etc/app.yaml", "subPath": "app.yaml"}]}))
        .unwrap();
        assert_eq!(c.mounts[0].host_path, "/data/cfg");
        assert_eq!(c.mounts[1].host_path, "/data/pods/u/volume-subpaths/cfg/app/1");
        // A subPath without a prepared target is an error, not a fallback to `<volume>/<subPath>`.
        let err = config(serde_json::json!({"name": "app", "image": "i:1", "volumeMounts": [
            {"name": "cfg", "mountPath": "/x", "subPath": "escape"}]}))
        .unwrap_err();
        assert!(err.contains("not prepared"), "{err}");
    }

    #[test]
    fn sub_path_expr_is_expanded_from_the_environment_and_checked() {
        let env = vec![
            ("POD".to_string(), "web-1".to_string()),
            ("EMPTY".to_string(), String::new()),
            ("UP".to_string(), "..".to_string()),
            ("ROOT".to_string(), "/etc".to_string()),
        ];
        let sub_paths = |mounts: serde_json::Value| {
            let (_, c) = pod(serde_json::json!({"name": "app", "image": "i", "volumeMounts": mounts}));
            sub_paths(&c, &env)
        };
        assert_eq!(
            sub_paths(serde_json::json!([
                {"name": "v", "mountPath": "/a"},
                {"name": "v", "mountPath": "/b", "subPath": "conf/x"},
                {"name": "v", "mountPath": "/c", "subPathExpr": "logs/$(POD)/$$(POD)"},
                {"name": "v", "mountPath": "/d", "subPath": ""}])),
            Ok(vec![(1, "conf/x".to_string()), (2, "logs/web-1/$(POD)".to_string())])
        );
        let cases = [
            ("$(NOPE)/$(EMPTY)", "missing value for EMPTY, NOPE"),
            (
                "a/$(UP)/b",
                "unable to provision SubPath `a/../b`: must not contain '..'",
            ),
            ("$(ROOT)", "error SubPath `/etc` must not be an absolute path"),
        ];
        for (expr, message) in cases {
            assert_eq!(
                sub_paths(serde_json::json!([{"name": "v", "mountPath": "/a", "subPathExpr": expr}])),
                Err(message.to_string()),
                "{expr}"
            );
        }
    }

    #[test]
    fn dropped_capabilities_and_no_privilege_escalation_reach_docker() {
        let c = config(serde_json::json!({"name": "app", "image": "i:1",
            "securityContext": {"capabilities": {"drop": ["ALL"]}}}))
        .unwrap();
        assert_eq!(c.cap_drop, vec!["ALL".to_string()]);
        assert!(
            !c.no_new_privileges,
            "unset allowPrivilegeEscalation leaves the default"
        );
        let c = config(serde_json::json!({"name": "app", "image": "i:1",
            "securityContext": {"allowPrivilegeEscalation": false}}))
        .unwrap();
        assert!(c.no_new_privileges && c.cap_drop.is_empty());
    }

    #[test]
    fn command_and_args_override_entrypoint_and_cmd_with_expansion() {
        let c = config(
            serde_json::json!({"name": "app", "image": "img:1", "command": ["/bin/echo"], "args": ["$(GREETING)"]}),
        )
        .unwrap();
        assert_eq!(c.entrypoint, Some(vec!["/bin/echo".to_string()]));
        assert_eq!(c.cmd, Some(vec!["hi".to_string()]));
        let c = config(serde_json::json!({"name": "app", "image": "img:1"})).unwrap();
        assert_eq!((c.entrypoint, c.cmd), (None, None));
        assert_eq!(c.network, NetworkMode::Container { id: "infra".into() });
        assert_eq!(c.name, "berth_default_web_app_01234567_2");
        assert_eq!(c.labels["berth.container.attempt"], "2");
    }

    #[test]
    fn stdin_tty_and_stdin_once_reach_docker() {
        let c =
            config(serde_json::json!({"name": "app", "image": "i:1", "stdin": true, "stdinOnce": true, "tty": true}))
                .unwrap();
        assert!(c.open_stdin && c.stdin_once && c.tty);
        // stdinOnce means nothing without stdin.
        let c = config(serde_json::json!({"name": "app", "image": "i:1", "stdinOnce": true})).unwrap();
        assert!(!c.open_stdin && !c.stdin_once && !c.tty);
    }

    #[test]
    fn resources_map_to_docker_limits_and_shares() {
        let c = config(serde_json::json!({"name": "app", "image": "i:1",
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}}}))
        .unwrap();
        assert_eq!(c.memory_limit, Some(64 << 20));
        assert_eq!(c.nano_cpus, Some(500_000_000));
        assert_eq!(c.cpu_shares, Some(256));
    }

    #[test]
    fn configmap_volumes_mount_read_only_and_privileged_is_refused() {
        let c = config(serde_json::json!({"name": "app", "image": "i:1",
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}))
        .unwrap();
        assert_eq!(
            c.mounts,
            vec![Mount {
                host_path: "/data/cfg".into(),
                container_path: "/etc/cfg".into(),
                read_only: true
            }]
        );
        let err = config(serde_json::json!({"name": "app", "image": "i:1", "securityContext": {"privileged": true}}))
            .unwrap_err();
        assert!(err.contains("privileged"), "{err}");
        let err = config(serde_json::json!({"name": "app", "image": "i:1",
            "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}))
        .unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }
}
