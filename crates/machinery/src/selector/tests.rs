//! Table-driven tests for the label and field selector grammars: every form, every error message, matching
//! and the canonical string form. Tests only; no production code here.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Parses `input` and checks its canonical rendering.
fn check_parse(input: &str, canonical: &str) {
    let sel = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{input:?} should parse: {e}"));
    assert_eq!(sel.to_string(), canonical, "canonical form of {input:?}");
}

/// Parses `input` and checks the error message.
fn check_error(input: &str, message: &str) {
    match LabelSelector::parse(input) {
        Ok(sel) => panic!("{input:?} should not parse, got {sel}"),
        Err(e) => assert_eq!(e.0, message, "error for {input:?}"),
    }
}

#[test]
fn every_label_grammar_form_parses_to_its_canonical_string() {
    for (input, canonical) in [
        ("", ""),
        ("   ", ""),
        ("app=web", "app=web"),
        ("app==web", "app==web"),
        ("app!=web", "app!=web"),
        ("app in (a,b)", "app in (a,b)"),
        ("app in (b, a)", "app in (a,b)"),
        ("app notin (a,b)", "app notin (a,b)"),
        ("app", "app"),
        ("!app", "!app"),
        ("  app  =  web  ", "app=web"),
        ("app in ( a , b )", "app in (a,b)"),
        ("tier=db,app=web", "app=web,tier=db"),
        ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
        ("app=", "app="),
        ("app=,tier", "app=,tier"),
        ("x in (in)", "x in (in)"),
        ("in=notin", "in=notin"),
        ("app.kubernetes.io/name=web", "app.kubernetes.io/name=web"),
        ("replicas>2", "replicas>2"),
        ("replicas<2", "replicas<2"),
        ("a in (x,x)", "a in (x)"),
    ] {
        check_parse(input, canonical);
    }
}

#[test]
fn label_grammar_errors_match_upstream_wording() {
    let name_part = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end \
                     with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for \
                     validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    let value_rule = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', \
                      and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or \
                      '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
    for (input, message) in [
        (
            "app:monolith",
            format!("unable to parse requirement: <nil>: Invalid value: \"app:monolith\": {name_part}"),
        ),
        (
            "*bar",
            format!("unable to parse requirement: <nil>: Invalid value: \"*bar\": {name_part}"),
        ),
        ("app=web,", "found '', expected: identifier after ','".to_string()),
        (
            "app=web tier=db",
            "found 'tier', expected: ',' or 'end of string'".to_string(),
        ),
        (
            "=web",
            "found '=', expected: !, identifier, or 'end of string'".to_string(),
        ),
        (
            ",app",
            "found ',', expected: !, identifier, or 'end of string'".to_string(),
        ),
        (
            "app web",
            "unable to parse requirement: found 'web', expected: in, notin, =, ==, !=, gt, lt".to_string(),
        ),
        (
            "app in a",
            "unable to parse requirement: found 'a' expected: '('".to_string(),
        ),
        (
            "app in (a",
            "unable to parse requirement: found '', expected: ',' or ')'".to_string(),
        ),
        (
            "app in (a b)",
            "unable to parse requirement: found 'b', expected: ',' or ')'".to_string(),
        ),
        (
            "app in (=)",
            "unable to parse requirement: found '=', expected: ',', ')' or identifier".to_string(),
        ),
        (
            "app in (a,=)",
            "unable to parse requirement: found '=', expected: ',', or identifier".to_string(),
        ),
        (
            "app==(",
            "unable to parse requirement: found '(', expected: identifier".to_string(),
        ),
        (
            "!=x",
            "found '!=', expected: !, identifier, or 'end of string'".to_string(),
        ),
        (
            "! =x",
            "unable to parse requirement: found '=', expected: identifier".to_string(),
        ),
        ("!app=x", "found '=', expected: ',' or 'end of string'".to_string()),
        (
            "app=-bad",
            format!("unable to parse requirement: values[0][app]: Invalid value: \"-bad\": {value_rule}"),
        ),
        (
            "n>abc",
            "unable to parse requirement: values[0]: Invalid value: \"abc\": for 'Gt', 'Lt' operators, the value \
             must be an integer"
                .to_string(),
        ),
        (
            "a/b/c=x",
            "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of \
             alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
             'MyName',  or 'my.name',  or '123-abc', regex used for validation is \
             '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. \
             'example.com/MyName')"
                .to_string(),
        ),
    ] {
        check_error(input, &message);
    }
}

#[test]
fn several_invalid_values_are_reported_together_in_brackets() {
    let err = LabelSelector::parse("a in (-x,-y)")
        .err()
        .map(|e| e.0)
        .unwrap_or_default();
    assert!(
        err.starts_with("unable to parse requirement: [values[0][a]: Invalid value: \"-x\""),
        "{err}"
    );
    assert!(err.contains(", values[1][a]: Invalid value: \"-y\""), "{err}");
}

#[test]
fn label_selectors_match_like_upstream() {
    let web = labels(&[("app", "web"), ("tier", "fe"), ("n", "5")]);
    let bare = labels(&[]);
    for (selector, on_web, on_bare) in [
        ("", true, true),
        ("app=web", true, false),
        ("app==web", true, false),
        ("app=db", false, false),
        ("app!=db", true, true),
        ("app!=web", false, true),
        ("app in (web,db)", true, false),
        ("app notin (web)", false, true),
        ("app notin (db)", true, true),
        ("app", true, false),
        ("!app", false, true),
        ("app=web,tier=fe", true, false),
        ("app=web,tier=be", false, false),
        ("n>4", true, false),
        ("n>5", false, false),
        ("n<6", true, false),
        ("app>4", false, false),
    ] {
        let sel = LabelSelector::parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}"));
        assert_eq!(sel.matches(&web), on_web, "{selector:?} on web");
        assert_eq!(sel.matches(&bare), on_bare, "{selector:?} on an unlabelled object");
    }
}

#[test]
fn selector_objects_convert_like_label_selector_as_selector() {
    let sel = LabelSelector::from_json(&json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["b", "a"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
            {"key": "zone", "operator": "Exists"}
        ]
    }))
    .expect("valid selector");
    assert_eq!(sel.to_string(), "app=web,!canary,env notin (dev),tier in (a,b),zone");
    assert!(sel.matches(&labels(&[("app", "web"), ("tier", "a"), ("zone", "z1")])));
    assert!(!sel.matches(&labels(&[
        ("app", "web"),
        ("tier", "a"),
        ("zone", "z1"),
        ("canary", "y")
    ])));
}

#[test]
fn an_empty_selector_object_matches_everything_and_null_matches_nothing() {
    let empty = LabelSelector::from_json(&json!({})).expect("empty selector");
    assert!(empty.is_empty());
    assert!(empty.matches(&labels(&[("a", "b")])));
    assert_eq!(empty.to_string(), "");

    let nothing = LabelSelector::from_json(&serde_json::Value::Null).expect("null selector");
    assert!(!nothing.is_empty());
    assert!(!nothing.matches(&labels(&[])));
}

#[test]
fn selector_objects_with_bad_operators_or_values_are_rejected() {
    let bad_op = LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "Has"}]}));
    assert_eq!(
        bad_op.err().map(|e| e.0).as_deref(),
        Some("\"Has\" is not a valid label selector operator")
    );
    let empty_in = LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "In"}]}));
    assert_eq!(
        empty_in.err().map(|e| e.0).as_deref(),
        Some("values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty")
    );
    let exists_with_values =
        LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}));
    assert!(exists_with_values.is_err());
    let bad_key = LabelSelector::from_json(&json!({"matchLabels": {"-a": "x"}}));
    assert!(bad_key
        .err()
        .map(|e| e.0)
        .unwrap_or_default()
        .starts_with("key: Invalid value: \"-a\": name part"));
}

#[test]
fn exact_label_matches_are_introspectable() {
    let sel = LabelSelector::parse("app=web,tier in (fe),env in (a,b)").expect("valid");
    assert_eq!(sel.requires_exact_match("app"), Some("web"));
    assert_eq!(sel.requires_exact_match("tier"), Some("fe"));
    assert_eq!(sel.requires_exact_match("env"), None);
    assert_eq!(sel.requires_exact_match("zone"), None);
}

fn check_field(input: &str, canonical: &str, requirements: &[(&str, FieldOp, &str)]) {
    let sel = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input:?} should parse: {e}"));
    assert_eq!(sel.to_string(), canonical, "canonical form of {input:?}");
    let got: Vec<(&str, FieldOp, &str)> = sel
        .requirements()
        .iter()
        .map(|r| (r.field.as_str(), r.op, r.value.as_str()))
        .collect();
    assert_eq!(got, requirements, "requirements of {input:?}");
}

#[test]
fn every_field_grammar_form_parses() {
    use FieldOp::{Eq, NotEq};
    check_field("", "", &[]);
    check_field("spec.nodeName=n1", "spec.nodeName=n1", &[("spec.nodeName", Eq, "n1")]);
    check_field("spec.nodeName==n1", "spec.nodeName=n1", &[("spec.nodeName", Eq, "n1")]);
    check_field(
        "status.phase!=Failed",
        "status.phase!=Failed",
        &[("status.phase", NotEq, "Failed")],
    );
    check_field(
        "spec.nodeName=n,status.phase!=Succeeded,status.phase!=Failed",
        "spec.nodeName=n,status.phase!=Failed,status.phase!=Succeeded",
        &[
            ("spec.nodeName", Eq, "n"),
            ("status.phase", NotEq, "Failed"),
            ("status.phase", NotEq, "Succeeded"),
        ],
    );
    check_field("a=x\\,y", "a=x\\,y", &[("a", Eq, "x,y")]);
    check_field("a=x\\=y\\\\z", "a=x\\=y\\\\z", &[("a", Eq, "x=y\\z")]);
    check_field("a=", "a=", &[("a", Eq, "")]);
    check_field("a=x,,b=y", "a=x,b=y", &[("a", Eq, "x"), ("b", Eq, "y")]);
    check_field("=", "", &[]);
}

#[test]
fn field_grammar_errors_match_upstream_wording() {
    for (input, message) in [
        ("nonsense", "invalid selector: 'nonsense'; can't understand 'nonsense'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        ("a=b\\x", "invalid field selector: invalid escape sequence: \\x"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ] {
        assert_eq!(
            FieldSelector::parse(input).err().map(|e| e.0).as_deref(),
            Some(message),
            "error for {input:?}"
        );
    }
}

#[test]
fn field_selectors_match_through_the_lookup_and_missing_fields_compare_as_empty() {
    let pod = |field: &str| match field {
        "spec.nodeName" => Some("n1".to_string()),
        "status.phase" => Some("Running".to_string()),
        _ => None,
    };
    for (selector, expected) in [
        ("", true),
        ("spec.nodeName=n1", true),
        ("spec.nodeName=n2", false),
        ("spec.nodeName=n1,status.phase!=Failed", true),
        ("spec.nodeName=n1,status.phase!=Running", false),
        ("spec.schedulerName=", true),
        ("spec.schedulerName!=", false),
    ] {
        let sel = FieldSelector::parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}"));
        assert_eq!(sel.matches(pod), expected, "{selector:?}");
    }
}

#[test]
fn field_selectors_expose_their_labels_and_the_exact_name() {
    let sel = FieldSelector::parse("metadata.name=web,spec.bogus!=1").expect("valid");
    assert_eq!(sel.fields().collect::<Vec<_>>(), vec!["metadata.name", "spec.bogus"]);
    assert_eq!(sel.exact_name(), Some("web"));
    assert_eq!(
        FieldSelector::parse("metadata.name!=web").expect("valid").exact_name(),
        None
    );
    assert!(FieldSelector::parse("").expect("valid").is_empty());
}
