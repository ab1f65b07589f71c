//! Label and field selectors: parsing the `labelSelector` / `fieldSelector` query grammars, building label
//! selectors from `metav1.LabelSelector` objects, matching, and printing the canonical string form. It does not
//! decide which fields a kind supports or how to read them from an object; callers supply labels and a lookup.

mod field;
mod label;
mod label_parse;
mod validation;

#[cfg(test)]
mod tests;

pub use field::{escape_value, FieldOp, FieldRequirement, FieldSelector};
pub use label::{LabelSelector, LabelSelectorRequirement, Operator, Requirement};
/// Upstream's label key and value checks (`IsQualifiedName`, `IsValidLabelValue`), shared with object validation.
pub use validation::{label_value_errors, qualified_name_errors};

/// A selector that failed to parse or validate. The server renders it as 400 BadRequest with this message,
/// which follows upstream's wording so kubectl users see familiar text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);
