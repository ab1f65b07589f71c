//! Label selectors: the parsed form of the `labelSelector` query grammar, the `metav1.LabelSelector` object form
//! (`matchLabels` + `matchExpressions`, upstream `LabelSelectorAsSelector`), matching, and rendering back to the
//! canonical string (upstream `Selector.String()`). Tokenising and parsing the query string lives in
//! `label_parse.rs`. It does not fetch labels from objects; callers pass the label map.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::validation::{aggregate, invalid, label_value_errors, qualified_name_errors};
use super::SelectorError;

/// The relation a [`Requirement`] checks between a label and its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `k=v`
    Equals,
    /// `k==v` (same meaning as `=`; kept so the selector prints back as written).
    DoubleEquals,
    /// `k!=v`; also true when the label is absent.
    NotEquals,
    /// `k in (a,b)`
    In,
    /// `k notin (a,b)`; also true when the label is absent.
    NotIn,
    /// `k`
    Exists,
    /// `!k`
    DoesNotExist,
    /// `k>5` (integer comparison; false when the label is absent or not an integer).
    GreaterThan,
    /// `k<5` (integer comparison; false when the label is absent or not an integer).
    LessThan,
}

/// One term of a label selector: a key, an operator and (for the binary operators) its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// As given; the canonical string form sorts them (upstream's `safeSort`).
    values: Vec<String>,
}

/// A parsed label selector (`app=web,tier in (a,b),!canary`): the AND of its requirements.
///
/// Two degenerate selectors exist, as upstream: the *empty* selector (no requirements) matches every object,
/// and the *nothing* selector (what a missing/`null` `LabelSelector` object converts to) matches none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

/// One entry of a `metav1.LabelSelector`'s `matchExpressions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// The values for `In`/`NotIn`; must be empty for `Exists`/`DoesNotExist`.
    pub values: Vec<String>,
}

impl Requirement {
    /// Builds and validates a requirement like upstream's `labels.NewRequirement` (key, value count per
    /// operator, label-value syntax, integers for `>`/`<`).
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        let mut errs = Vec::new();
        let key_errs = qualified_name_errors(key);
        if !key_errs.is_empty() {
            errs.push(invalid("key", key, &key_errs.join("; ")));
        }
        let go_list = || {
            format!(
                "[]string{{{}}}",
                values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ")
            )
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => errs.push(format!(
                "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
                go_list()
            )),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => errs.push(format!(
                "values: Invalid value: {}: exact-match compatibility requires one single value",
                go_list()
            )),
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => errs.push(format!(
                "values: Invalid value: {}: values set must be empty for exists and does not exist",
                go_list()
            )),
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                        go_list()
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(invalid(
                            &format!("values[{i}]"),
                            v,
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let value_errs = label_value_errors(v);
            if !value_errs.is_empty() {
                errs.push(invalid(&format!("values[{i}][{key}]"), v, &value_errs.join("; ")));
            }
        }
        match aggregate(errs) {
            Some(msg) => Err(SelectorError(msg)),
            None => Ok(Requirement {
                key: key.to_string(),
                operator,
                values,
            }),
        }
    }

    /// The label key this requirement tests.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, in the order given.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a label set satisfies this requirement (upstream `Requirement.Matches`).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let listed = |v: &String| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => value.is_some_and(listed),
            // Absent keys satisfy the negative operators: `env!=prod` selects unlabelled objects too.
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(listed),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Some(want)) = (value, self.values.first()) else {
                    return false;
                };
                match (have.parse::<i64>(), want.parse::<i64>()) {
                    (Ok(have), Ok(want)) if self.operator == Operator::GreaterThan => have > want,
                    (Ok(have), Ok(want)) => have < want,
                    _ => false,
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in (",
            Operator::NotIn => " notin (",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        f.write_str(op)?;
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        f.write_str(&values.join(","))?;
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl LabelSelector {
    /// The selector that matches every object (no requirements).
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// The selector that matches no object: what a `null` `metav1.LabelSelector` converts to.
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses the `labelSelector` query grammar. The empty string selects everything.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut requirements = super::label_parse::parse_requirements(s)?;
        // Upstream sorts by key so that equivalent selectors print identically.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Builds the selector a Deployment/ReplicaSet/Service-style `metav1.LabelSelector` denotes (upstream
    /// `LabelSelectorAsSelector`): every `matchLabels` pair becomes `k=v`, every expression its operator.
    /// With neither, the selector matches everything.
    pub fn from_match(
        match_labels: &BTreeMap<String, String>,
        match_expressions: &[LabelSelectorRequirement],
    ) -> Result<Self, SelectorError> {
        let mut requirements = Vec::with_capacity(match_labels.len() + match_expressions.len());
        for (k, v) in match_labels {
            requirements.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        for expr in match_expressions {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError(format!(
                        "{other:?} is not a valid label selector operator"
                    )))
                }
            };
            requirements.push(Requirement::new(&expr.key, operator, expr.values.clone())?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Builds the selector from a `metav1.LabelSelector` JSON value. `null` gives [`LabelSelector::nothing`],
    /// `{}` gives [`LabelSelector::everything`].
    pub fn from_json(value: &Value) -> Result<Self, SelectorError> {
        let obj = match value {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(obj) => obj,
            other => return Err(SelectorError(format!("label selector must be an object, got {other}"))),
        };
        let mut match_labels = BTreeMap::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let v = v
                        .as_str()
                        .ok_or_else(|| SelectorError(format!("matchLabels[{k}] must be a string")))?;
                    match_labels.insert(k.clone(), v.to_string());
                }
            }
            Some(_) => return Err(SelectorError("matchLabels must be an object".to_string())),
        }
        let mut expressions = Vec::new();
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    expressions.push(expression_from_json(item)?);
                }
            }
            Some(_) => return Err(SelectorError("matchExpressions must be a list".to_string())),
        }
        LabelSelector::from_match(&match_labels, &expressions)
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True when the selector does not restrict anything (upstream `Empty()`); false for
    /// [`LabelSelector::nothing`]. Printers show `<none>` for an empty selector.
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The single value a selector demands for `key` (`k=v`, `k==v` or `k in (v)`), if any; lets a server
    /// narrow a list before matching (upstream `RequiresExactMatch`).
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

/// Renders the canonical string (upstream `Selector.String()`), e.g. for `Scale.status.selector`.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

fn expression_from_json(item: &Value) -> Result<LabelSelectorRequirement, SelectorError> {
    let key = item.get("key").and_then(Value::as_str).unwrap_or_default().to_string();
    let operator = item
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let values = match item.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(vs)) => vs
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| SelectorError("values must be strings".into()))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(SelectorError("values must be a list".to_string())),
    };
    Ok(LabelSelectorRequirement { key, operator, values })
}
