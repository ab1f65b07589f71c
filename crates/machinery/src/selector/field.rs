//! Field selectors: the `fieldSelector` query grammar (`f=v`, `f==v`, `f!=v`, comma = AND, values escaped with
//! `\,` `\=` `\\`), following upstream `k8s.io/apimachinery/pkg/fields/selector.go`, and matching against a
//! caller-supplied field lookup. Which fields a kind supports is the server's business, not this file's: it only
//! exposes [`FieldSelector::fields`] so the server can reject unsupported labels.

use std::fmt;

use super::SelectorError;

/// The comparison of one field-selector term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    /// `f=v` or `f==v`
    Eq,
    /// `f!=v`
    NotEq,
}

/// One term of a field selector, with its value already unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field label, e.g. `spec.nodeName`.
    pub field: String,
    /// Equality or inequality.
    pub op: FieldOp,
    /// The literal value to compare with.
    pub value: String,
}

/// A parsed field selector (`spec.nodeName=n1,status.phase!=Failed`): the AND of its terms. An empty selector
/// matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` query grammar.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut terms = split_terms(s);
        // Upstream sorts the raw terms, which fixes the canonical order of `Display`.
        terms.sort_unstable();
        let mut requirements = Vec::new();
        for term in terms {
            if term.is_empty() {
                continue;
            }
            let Some((field, op, raw)) = split_term(term) else {
                return Err(SelectorError(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            let value = unescape_value(raw)?;
            // Upstream's identity transform turns a term with empty field and value (`=`) into "everything".
            if field.is_empty() && value.is_empty() {
                continue;
            }
            requirements.push(FieldRequirement {
                field: field.to_string(),
                op,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The terms, in canonical (sorted) order.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether the selector restricts nothing.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object matches. `lookup` returns a field's value as a string; a field it does not know
    /// (`None`) compares as the empty string, as upstream's `fields.Set.Get` does.
    pub fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let have = lookup(&r.field).unwrap_or_default();
            match r.op {
                FieldOp::Eq => have == r.value,
                FieldOp::NotEq => have != r.value,
            }
        })
    }

    /// The field labels used, so the server can answer 400 `field label not supported: <label>`.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|r| r.field.as_str())
    }

    /// The value an equality term demands for `field`, if any (upstream `RequiresExactMatch`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.op == FieldOp::Eq)
            .map(|r| r.value.as_str())
    }

    /// The name demanded by `metadata.name=X`: lets a list or watch fetch one object instead of scanning
    /// (informers for `kubectl rollout status`, `wait`, `get -w NAME` send exactly this).
    pub fn exact_name(&self) -> Option<&str> {
        self.requires_exact_match("metadata.name")
    }
}

/// Renders the canonical string with values re-escaped (upstream `String()`).
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.op {
                FieldOp::Eq => "=",
                FieldOp::NotEq => "!=",
            };
            write!(f, "{}{op}{}", r.field, escape_value(&r.value))?;
        }
        Ok(())
    }
}

/// Escapes `\`, `,` and `=` so a literal value survives the round trip (upstream `EscapeValue`).
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits on commas that are not escaped; escapes stay in the terms for [`unescape_value`].
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at the first operator. The field part has no escaping, so the first `!=`, `==` or `=` wins;
/// `==` is tried before `=` so it does not leave a stray `=` in the value.
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op_str, op) in [("!=", FieldOp::NotEq), ("==", FieldOp::Eq), ("=", FieldOp::Eq)] {
            if let Some(value) = rest.strip_prefix(op_str) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

/// Undoes [`escape_value`]; a bare `,`/`=` or an unknown escape is an error with upstream's wording (which
/// prints the offending character as its code point number).
fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => {
                return Err(SelectorError(format!(
                    "invalid field selector: unescaped character in value: {}",
                    u32::from(c)
                )))
            }
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError(
            "invalid field selector: invalid escape sequence: \\".to_string(),
        ));
    }
    Ok(out)
}
