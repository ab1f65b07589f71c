//! Label and field selectors: parsing the query-string grammar and matching objects.
//! (Stub: being implemented.)

use std::collections::BTreeMap;

/// A parse error, rendered by the server as 400 BadRequest with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// A parsed label selector (`app=web,tier in (a,b),!canary`). An empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {}

impl LabelSelector {
    /// Parses the `labelSelector` query grammar.
    pub fn parse(_s: &str) -> Result<Self, SelectorError> {
        Ok(LabelSelector {})
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, _labels: &BTreeMap<String, String>) -> bool {
        true
    }
}

/// A parsed field selector (`spec.nodeName=n1,status.phase!=Failed`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {}

impl FieldSelector {
    /// Parses the `fieldSelector` query grammar.
    pub fn parse(_s: &str) -> Result<Self, SelectorError> {
        Ok(FieldSelector {})
    }
}
