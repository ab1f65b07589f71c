//! The shape of the protobuf schema table: messages, fields, their wire types and cardinality, and the index of
//! top-level kinds. The table itself is generated (`schema_generated.rs`); this file only declares its types and
//! looks things up in it. It knows nothing about wire bytes or JSON.

use crate::schema_generated::{KINDS, MESSAGES};

/// One protobuf message of the Kubernetes API (`k8s.io.api.core.v1.Pod`, ...).
#[derive(Debug)]
pub(crate) struct Message {
    /// Full proto name; special messages (Time, Quantity, ...) are recognised by it.
    pub(crate) name: &'static str,
    /// Fields sorted by tag.
    pub(crate) fields: &'static [Field],
}

/// One field of a message.
#[derive(Debug)]
pub(crate) struct Field {
    /// Field number on the wire.
    pub(crate) tag: u32,
    /// The JSON name upstream uses (`hostIPC`, not `hostIpc`); empty for inline embeds.
    pub(crate) json: &'static str,
    /// The value type (for maps: the entry's value type).
    pub(crate) ty: Ty,
    /// Singular, repeated or map.
    pub(crate) card: Card,
    /// Go `json:",inline"`: the embedded message's fields belong to the parent's JSON object.
    pub(crate) inline: bool,
}

/// A proto value type, as used by the Kubernetes protos (proto2, no enums, no unsigned or zigzag integers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    Bool,
    Int32,
    Int64,
    // No double field is reachable from today's kinds, but the generator emits it when one is.
    #[allow(dead_code)]
    Double,
    String,
    Bytes,
    /// A message, by index into the message table.
    Message(usize),
}

/// How many values a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Card {
    /// proto2 `optional`: present or not.
    Single,
    /// proto2 `repeated`: a JSON array, packed or not on the wire.
    Repeated,
    /// `map<K, V>`: repeated entry messages {1: key, 2: value}; the key's type is given here.
    Map(Ty),
}

/// A top-level kind that can arrive as a request body.
#[derive(Debug)]
pub(crate) struct Kind {
    pub(crate) api_version: &'static str,
    pub(crate) kind: &'static str,
    /// Index into the message table.
    pub(crate) message: usize,
}

impl Message {
    /// The field with this tag, if the schema knows it (unknown tags are skipped, as proto2 requires).
    pub(crate) fn field(&self, tag: u32) -> Option<&'static Field> {
        self.fields
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .map(|i| &self.fields[i])
    }
}

/// The message at `index`; `None` only if the generated table were inconsistent.
pub(crate) fn message(index: usize) -> Option<&'static Message> {
    MESSAGES.get(index)
}

/// The message that encodes `kind` in `api_version`.
pub(crate) fn kind_message(api_version: &str, kind: &str) -> Option<&'static Message> {
    let found = KINDS.iter().find(|k| k.api_version == api_version && k.kind == kind);
    // DeleteOptions is registered in every group version (metav1.AddToGroupVersion), so a typed client may label it
    // `v1`, `apps/v1` or `meta.k8s.io/v1`; the message is the same.
    let found = found.or_else(|| {
        (kind == "DeleteOptions")
            .then(|| KINDS.iter().find(|k| k.kind == "DeleteOptions"))
            .flatten()
    });
    found.and_then(|k| message(k.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reference_and_kind_points_into_the_table() {
        for m in MESSAGES {
            for f in m.fields {
                for ty in [f.ty, if let Card::Map(k) = f.card { k } else { Ty::Bool }] {
                    if let Ty::Message(i) = ty {
                        assert!(i < MESSAGES.len(), "{}.{} points past the table", m.name, f.json);
                    }
                }
            }
        }
        for k in KINDS {
            assert!(k.message < MESSAGES.len(), "{} {}", k.api_version, k.kind);
            assert!(
                MESSAGES[k.message].name.ends_with(&format!(".{}", k.kind)),
                "{} {}",
                k.api_version,
                k.kind
            );
        }
    }

    #[test]
    fn fields_are_sorted_by_unique_tag_so_binary_search_finds_them() {
        for m in MESSAGES {
            assert!(m.fields.windows(2).all(|w| w[0].tag < w[1].tag), "{}", m.name);
        }
    }

    #[test]
    fn only_inline_fields_lack_a_json_name_and_inline_fields_embed_singular_messages() {
        for m in MESSAGES {
            for f in m.fields {
                assert_eq!(f.json.is_empty(), f.inline, "{} tag {}", m.name, f.tag);
                if f.inline {
                    assert!(
                        matches!((f.ty, f.card), (Ty::Message(_), Card::Single)),
                        "{} tag {}",
                        m.name,
                        f.tag
                    );
                }
            }
        }
    }

    #[test]
    fn the_inline_embeds_are_exactly_the_go_inline_fields() {
        // Each of these is `json:",inline"` in k8s.io/api; the generator found them without being told.
        let mut found: Vec<String> = MESSAGES
            .iter()
            .flat_map(|m| m.fields.iter().filter(|f| f.inline).map(move |f| (m, f)))
            .map(|(m, f)| {
                let Ty::Message(i) = f.ty else { unreachable!() };
                format!(
                    "{} <- {}",
                    m.name.rsplit('.').next().unwrap_or(""),
                    MESSAGES[i].name.rsplit('.').next().unwrap_or("")
                )
            })
            .collect();
        found.sort();
        let expected = [
            "ConfigMapEnvSource <- LocalObjectReference",
            "ConfigMapKeySelector <- LocalObjectReference",
            "ConfigMapProjection <- LocalObjectReference",
            "ConfigMapVolumeSource <- LocalObjectReference",
            "EphemeralContainer <- EphemeralContainerCommon",
            "PersistentVolumeSpec <- PersistentVolumeSource",
            "Probe <- ProbeHandler",
            "SecretEnvSource <- LocalObjectReference",
            "SecretKeySelector <- LocalObjectReference",
            "SecretProjection <- LocalObjectReference",
            "Volume <- VolumeSource",
        ];
        assert_eq!(found, expected);
    }

    #[test]
    fn acronym_fields_carry_upstreams_json_names() {
        let check = |message: &str, tag: u32, expected: &str| {
            let m = MESSAGES
                .iter()
                .find(|m| m.name == message)
                .unwrap_or_else(|| panic!("{message} in table"));
            assert_eq!(m.field(tag).map(|f| f.json), Some(expected), "{message} tag {tag}");
        };
        check("k8s.io.api.core.v1.PodSpec", 13, "hostIPC");
        check("k8s.io.api.core.v1.PodSpec", 12, "hostPID");
        check("k8s.io.api.core.v1.PodSpec", 10, "nodeName");
        check("k8s.io.api.core.v1.PodStatus", 12, "podIPs");
        check("k8s.io.api.core.v1.PodStatus", 6, "podIP");
        check("k8s.io.api.core.v1.PodStatus", 5, "hostIP");
        check("k8s.io.api.core.v1.PodStatus", 16, "hostIPs");
        check("k8s.io.api.core.v1.ServiceSpec", 18, "clusterIPs");
        check("k8s.io.api.core.v1.ServiceSpec", 3, "clusterIP");
        check("k8s.io.api.core.v1.ServiceSpec", 5, "externalIPs");
        check("k8s.io.api.core.v1.ServiceSpec", 8, "loadBalancerIP");
        check("k8s.io.api.core.v1.NodeSpec", 1, "podCIDR");
        check("k8s.io.api.core.v1.NodeSpec", 7, "podCIDRs");
        check("k8s.io.api.core.v1.NodeSpec", 3, "providerID");
        check("k8s.io.api.core.v1.NodeSpec", 2, "externalID");
        check("k8s.io.api.core.v1.Volume", 1, "name");
        check("k8s.io.api.core.v1.VolumeSource", 5, "gitRepo");
        check("k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta", 5, "uid");
        check(
            "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            8,
            "creationTimestamp",
        );
    }
}
