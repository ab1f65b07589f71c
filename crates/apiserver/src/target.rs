//! Resolves a request path to the resource it addresses: which kind, which namespace, which object and which
//! subresource. Every resource path has one of the shapes below, for the core group (`/api/v1`) and for named
//! groups (`/apis/{group}/{version}`):
//!
//! ```text
//! {prefix}/{plural}                                   list/create (cluster-scoped, or all namespaces)
//! {prefix}/{plural}/{name}[/{sub}]                    cluster-scoped object
//! {prefix}/namespaces/{ns}/{plural}                   list/create in a namespace
//! {prefix}/namespaces/{ns}/{plural}/{name}[/{sub}]    namespaced object
//! ```
//! `/api/v1/namespaces/{name}[/status|/finalize]` is the Namespace object itself.

use berth_api::resources::{self, ResourceInfo};
use berth_api::ApiError;

/// What a resource request addresses.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource kind.
    pub resource: &'static ResourceInfo,
    /// The namespace, for namespaced requests (None for cluster-scoped kinds and all-namespace lists).
    pub namespace: Option<String>,
    /// The object name, for object requests.
    pub name: Option<String>,
    /// The subresource (`status`, `scale`, ...).
    pub subresource: Option<String>,
}

impl Target {
    /// Parses a path; `None` when it is not a resource path at all.
    pub fn parse(path: &str) -> Result<Target, ApiError> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segs.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return Err(ApiError::path_not_found()),
        };
        let find = |plural: &str| resources::by_plural(group, version, plural).ok_or_else(ApiError::path_not_found);
        let target =
            |resource: &'static ResourceInfo, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
                if name.is_some_and(str::is_empty) || namespace.is_some_and(str::is_empty) {
                    return Err(ApiError::path_not_found());
                }
                if let Some(s) = sub {
                    if resource.subresource(s).is_none() {
                        return Err(ApiError::path_not_found());
                    }
                }
                Ok(Target {
                    resource,
                    namespace: namespace.map(str::to_string),
                    name: name.map(str::to_string),
                    subresource: sub.map(str::to_string),
                })
            };
        match rest {
            ["namespaces", ns, plural, tail @ ..]
                if group.is_empty() && is_namespace_sub(plural) && tail.is_empty() =>
            {
                target(find("namespaces")?, None, Some(ns), Some(plural))
            }
            ["namespaces", ns, plural, tail @ ..] => {
                let r = find(plural)?;
                if !r.namespaced() {
                    return Err(ApiError::path_not_found());
                }
                match tail {
                    [] => target(r, Some(ns), None, None),
                    [name] => target(r, Some(ns), Some(name), None),
                    [name, sub] => target(r, Some(ns), Some(name), Some(sub)),
                    _ => Err(ApiError::path_not_found()),
                }
            }
            [plural, tail @ ..] => {
                let r = find(plural)?;
                match tail {
                    [] => target(r, None, None, None),
                    // Namespaced objects are only addressable under /namespaces/{ns}/.
                    _ if r.namespaced() => Err(ApiError::path_not_found()),
                    [name] => target(r, None, Some(name), None),
                    [name, sub] => target(r, None, Some(name), Some(sub)),
                    _ => Err(ApiError::path_not_found()),
                }
            }
            [] => Err(ApiError::path_not_found()),
        }
    }

    /// The storage key of the addressed object (requires a name).
    pub fn key(&self) -> String {
        object_key(
            self.resource,
            self.namespace.as_deref(),
            self.name.as_deref().unwrap_or(""),
        )
    }

    /// The storage prefix of the addressed collection.
    pub fn prefix(&self) -> String {
        collection_prefix(self.resource, self.namespace.as_deref())
    }
}

fn is_namespace_sub(s: &str) -> bool {
    s == "status" || s == "finalize"
}

/// `/registry/{group}/{plural}/` — the group is `core` for the core group so keys never start with `//`.
fn resource_prefix(r: &ResourceInfo) -> String {
    let group = if r.group.is_empty() { "core" } else { r.group };
    format!("/registry/{group}/{}/", r.plural)
}

/// The storage key of one object.
pub fn object_key(r: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if r.namespaced() => format!("{}{ns}/{name}", resource_prefix(r)),
        _ => format!("{}{name}", resource_prefix(r)),
    }
}

/// The storage prefix of a collection: one namespace, or every object of the kind.
pub fn collection_prefix(r: &ResourceInfo, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if r.namespaced() => format!("{}{ns}/", resource_prefix(r)),
        _ => resource_prefix(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (plural, namespace, name, subresource) a path should resolve to.
    type Expected<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);

    fn check(path: &str, expected: Option<Expected>) {
        match (Target::parse(path), expected) {
            (Ok(t), Some((plural, ns, name, sub))) => {
                assert_eq!(t.resource.plural, plural, "{path}");
                assert_eq!(t.namespace.as_deref(), ns, "{path}");
                assert_eq!(t.name.as_deref(), name, "{path}");
                assert_eq!(t.subresource.as_deref(), sub, "{path}");
            }
            (Err(e), None) => assert_eq!(e.code, 404, "{path}"),
            (got, want) => panic!("{path}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn resource_paths_resolve_like_upstream() {
        check("/api/v1/pods", Some(("pods", None, None, None)));
        check(
            "/api/v1/namespaces/default/pods",
            Some(("pods", Some("default"), None, None)),
        );
        check(
            "/api/v1/namespaces/default/pods/web",
            Some(("pods", Some("default"), Some("web"), None)),
        );
        check(
            "/api/v1/namespaces/default/pods/web/status",
            Some(("pods", Some("default"), Some("web"), Some("status"))),
        );
        check("/api/v1/namespaces", Some(("namespaces", None, None, None)));
        check(
            "/api/v1/namespaces/kube-system",
            Some(("namespaces", None, Some("kube-system"), None)),
        );
        check(
            "/api/v1/namespaces/x/status",
            Some(("namespaces", None, Some("x"), Some("status"))),
        );
        check("/api/v1/nodes/n1", Some(("nodes", None, Some("n1"), None)));
        check(
            "/apis/apps/v1/namespaces/d/deployments/w/scale",
            Some(("deployments", Some("d"), Some("w"), Some("scale"))),
        );
        check("/apis/apps/v1/deployments", Some(("deployments", None, None, None)));
    }

    #[test]
    fn unknown_or_misplaced_paths_are_not_found() {
        check("/api/v1/widgets", None);
        check("/apis/apps/v2/deployments", None);
        check("/api/v1/pods/web", None);
        check("/api/v1/namespaces/default/nodes", None);
        check("/api/v1/namespaces/default/pods/web/bogus", None);
        check("/api/v1/namespaces/default/pods/web/status/extra", None);
        check("/api/v1/namespaces//pods", None);
        check("/metrics", None);
    }

    #[test]
    fn keys_separate_namespaces_and_groups() {
        let t = Target::parse("/apis/apps/v1/namespaces/d/deployments/w").unwrap();
        assert_eq!(t.key(), "/registry/apps/deployments/d/w");
        assert_eq!(t.prefix(), "/registry/apps/deployments/d/");
        let n = Target::parse("/api/v1/nodes/n1").unwrap();
        assert_eq!(n.key(), "/registry/core/nodes/n1");
        let all = Target::parse("/api/v1/pods").unwrap();
        assert_eq!(all.prefix(), "/registry/core/pods/");
    }
}
