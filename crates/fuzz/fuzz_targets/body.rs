//! Fuzzes request body decoding as the API server does it (`berth_apiserver::body::decode_object`): the first
//! byte picks the content type (JSON, YAML or Kubernetes protobuf), the rest is the body. Checks for panics and
//! for a decode that allocates more than the crate's memory budget. It does not validate the decoded object.
#![no_main]

use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [&str; 3] = [
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    let ct = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    // Only YAML can expand (aliases), up to its documented budget; JSON and protobuf get the plain budget.
    let allowance = if ct == "application/yaml" {
        berth_fuzz::DESIGNED_EXPANSION
    } else {
        0
    };
    berth_fuzz::check_with_allowance(data.len(), allowance, || {
        let _ = berth_apiserver::body::decode_object(&headers, body, ("v1", "Pod"));
    });
});
