//! Fuzzes label and field selectors: the first byte picks a `labelSelector` query string, a `fieldSelector`
//! query string, or a `metav1.LabelSelector` object as JSON (as in a Deployment's `spec.selector`). A selector
//! that parses is then matched against a few label sets and fields. Checks for panics and for a parse that
//! allocates more than the crate's memory budget.
#![no_main]

use std::collections::BTreeMap;

use berth_machinery::selector::{FieldSelector, LabelSelector};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let labels: BTreeMap<String, String> = [
        ("app", "web"),
        ("tier", "frontend"),
        ("x.example.com/y", ""),
        ("n", "10"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    berth_fuzz::check(data.len(), || match mode % 3 {
        0 => {
            let Ok(s) = std::str::from_utf8(rest) else { return };
            if let Ok(sel) = LabelSelector::parse(s) {
                let _ = sel.matches(&labels);
                let _ = sel.matches(&BTreeMap::new());
                let _ = sel.requires_exact_match("app");
            }
        }
        1 => {
            let Ok(s) = std::str::from_utf8(rest) else { return };
            if let Ok(sel) = FieldSelector::parse(s) {
                let _ = sel.matches(|f| (f == "metadata.name").then(|| "web-0".to_owned()));
                let _ = sel.exact_name();
                let _ = sel.fields().count();
            }
        }
        _ => {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(rest) else {
                return;
            };
            if let Ok(sel) = LabelSelector::from_json(&v) {
                let _ = sel.matches(&labels);
            }
        }
    });
});
