//! A container's environment, resolved the way the kubelet does it: `envFrom` sources first, then `env` entries
//! in order (later ones win), each value with `$(VAR)` references to earlier variables expanded, and `valueFrom`
//! read from ConfigMaps, Secrets and the Pod's own fields.
//!
//! A missing ConfigMap, Secret or key that is not `optional` makes the container unstartable: the caller shows the
//! message as `CreateContainerConfigError`, with upstream's wording.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::Api;

/// ConfigMaps and Secrets read during one sync, so a pod referencing one object many times reads it once.
#[derive(Default)]
pub struct Sources {
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Sources {
    /// The ConfigMap, `None` if it does not exist.
    pub async fn config_map(
        &mut self,
        client: &kube::Client,
        ns: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, String> {
        if let Some(found) = self.config_maps.get(name) {
            return Ok(found.clone());
        }
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| format!("reading configmap {name:?}: {e}"))?;
        self.config_maps.insert(name.to_string(), found.clone());
        Ok(found)
    }

    /// The Secret, `None` if it does not exist.
    pub async fn secret(&mut self, client: &kube::Client, ns: &str, name: &str) -> Result<Option<Secret>, String> {
        if let Some(found) = self.secrets.get(name) {
            return Ok(found.clone());
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| format!("reading secret {name:?}: {e}"))?;
        self.secrets.insert(name.to_string(), found.clone());
        Ok(found)
    }
}

/// The Pod facts `fieldRef` can read that are not in the Pod object yet when the container starts.
pub struct Downward<'a> {
    pub pod_ip: Option<&'a str>,
    pub host_ip: &'a str,
    pub node_name: &'a str,
}

/// Whether `container`'s environment reads the pod IP, which exists only once the sandbox runs.
pub fn needs_pod_ip(container: &Container) -> bool {
    container.env.iter().flatten().any(|var| {
        var.value_from
            .as_ref()
            .and_then(|from| from.field_ref.as_ref())
            .is_some_and(|field| matches!(field.field_path.as_str(), "status.podIP" | "status.podIPs"))
    })
}

/// Resolves `container`'s environment. Errors are upstream's `CreateContainerConfigError` messages.
pub async fn resolve(
    client: &kube::Client,
    sources: &mut Sources,
    pod: &Pod,
    container: &Container,
    downward: &Downward<'_>,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        env.retain(|(existing, _)| existing != &k);
        env.push((k, v));
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let optional = r.optional.unwrap_or(false);
            match sources.config_map(client, ns, &r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        set(&mut env, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if optional => {}
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            let optional = r.optional.unwrap_or(false);
            match sources.secret(client, ns, &r.name).await? {
                Some(secret) => {
                    for (k, v) in secret.data.iter().flatten() {
                        set(
                            &mut env,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if optional => {}
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(value) = &var.value {
            expand(value, &env)
        } else if let Some(from) = &var.value_from {
            if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional.unwrap_or(false);
                match sources.config_map(client, ns, &r.name).await? {
                    Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => return Err(format!("couldn't find key {} in ConfigMap {}/{}", r.key, ns, r.name)),
                    },
                    None if optional => continue,
                    None => return Err(format!("configmap {:?} not found", r.name)),
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional.unwrap_or(false);
                match sources.secret(client, ns, &r.name).await? {
                    Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if optional => continue,
                        None => return Err(format!("couldn't find key {} in Secret {}/{}", r.key, ns, r.name)),
                    },
                    None if optional => continue,
                    None => return Err(format!("secret {:?} not found", r.name)),
                }
            } else if let Some(r) = &from.field_ref {
                field_value(pod, &r.field_path, downward)?
            } else if let Some(r) = &from.resource_field_ref {
                resource_value(container, &r.resource, r.divisor.as_ref().map(|d| d.0.as_str()))?
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

/// Expands `$(NAME)` references to variables defined so far; `$$` is a literal `$`; unknown references stay as
/// written (upstream's `expansion.Expand`).
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    expand_with(input, |name| {
        env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
}

/// [`expand`] with the variables looked up by `lookup`.
pub fn expand_with(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn field_value(pod: &Pod, path: &str, downward: &Downward<'_>) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => Some(downward.node_name.to_string()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.podIPs" => downward.pod_ip.map(str::to_string),
        "status.hostIP" | "status.hostIPs" => Some(downward.host_ip.to_string()),
        _ => {
            let keyed = |prefix: &str| path.strip_prefix(prefix).and_then(|r| r.strip_suffix("']"));
            if let Some(key) = keyed("metadata.labels['") {
                meta.labels.as_ref().and_then(|l| l.get(key).cloned())
            } else if let Some(key) = keyed("metadata.annotations['") {
                meta.annotations.as_ref().and_then(|a| a.get(key).cloned())
            } else {
                return Err(format!("unsupported fieldPath: {path}"));
            }
        }
    };
    Ok(value.unwrap_or_default())
}

fn resource_value(container: &Container, resource: &str, divisor: Option<&str>) -> Result<String, String> {
    use berth_api::validation::quantity::Quantity;
    let resources = container.resources.as_ref();
    let (section, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource: {resource}"))?;
    let map = match section {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported resource: {resource}")),
    };
    let Some(q) = map.and_then(|m| m.get(name)).and_then(|q| Quantity::parse(&q.0)) else {
        return Ok("0".to_string());
    };
    let divisor = divisor
        .and_then(Quantity::parse)
        .filter(|d| d.nanos > 0)
        .unwrap_or(Quantity { nanos: 1_000_000_000 });
    // Upstream rounds up: a 250m CPU limit read with divisor 1 is "1".
    let value = (q.nanos + divisor.nanos - 1) / divisor.nanos;
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_upstream_rules() {
        let env = vec![("A".to_string(), "x".to_string()), ("B".to_string(), "y".to_string())];
        assert_eq!(expand("$(A)-$(B)", &env), "x-y");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("$(C)", &env), "$(C)");
        assert_eq!(expand("cost $5", &env), "cost $5");
        assert_eq!(expand("$(A", &env), "$(A");
    }

    #[test]
    fn only_a_pod_ip_field_ref_waits_for_the_sandbox() {
        let container = |path: &str| -> Container {
            serde_json::from_value(serde_json::json!({
                "name": "c",
                "env": [
                    {"name": "PLAIN", "value": "x"},
                    {"name": "FIELD", "valueFrom": {"fieldRef": {"fieldPath": path}}},
                ],
            }))
            .expect("container")
        };
        assert!(needs_pod_ip(&container("status.podIP")));
        assert!(needs_pod_ip(&container("status.podIPs")));
        assert!(!needs_pod_ip(&container("status.hostIP")));
        assert!(!needs_pod_ip(&container("metadata.name")));
    }
}
