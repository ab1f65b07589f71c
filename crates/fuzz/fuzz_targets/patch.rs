//! Fuzzes the three PATCH formats as the API server applies them (`berth_apiserver::handlers::apply_patch_type`
//! after `body::parse_json`). Input: one byte for the patch type, one byte for the kind (strategic merge depends
//! on it), then the stored object as JSON, a NUL byte, and the patch document. Checks for panics and for a patch
//! that allocates more than the crate's memory budget; it does not check the result's meaning.
#![no_main]

use libfuzzer_sys::fuzz_target;

const PATCH_TYPES: [&str; 3] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];
const KINDS: [&str; 8] = [
    "Pod",
    "Deployment",
    "ConfigMap",
    "Service",
    "Node",
    "CronJob",
    "Namespace",
    "Widget",
];

fuzz_target!(|data: &[u8]| {
    let [ty, kind, rest @ ..] = data else { return };
    let ct = PATCH_TYPES[usize::from(*ty) % PATCH_TYPES.len()];
    let kind = KINDS[usize::from(*kind) % KINDS.len()];
    let (stored, doc) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => return,
    };
    // The stored object was accepted by the server once, so it is valid JSON within the depth limit.
    let Ok(stored) = berth_apiserver::body::parse_json(stored) else {
        return;
    };
    // A JSON patch's copies may add up to their documented budget; the other two types only merge the input.
    let allowance = if ct == "application/json-patch+json" {
        berth_fuzz::DESIGNED_EXPANSION
    } else {
        0
    };
    berth_fuzz::check_with_allowance(data.len(), allowance, || {
        let Ok(doc) = berth_apiserver::body::parse_json(doc) else {
            return;
        };
        let _ = berth_apiserver::handlers::apply_patch_type(kind, ct, &stored, &doc);
    });
});
