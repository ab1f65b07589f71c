//! The bearer-token check: does a request carry `Authorization: Bearer <token>`? The comparison takes the same
//! time wherever the given token first differs from the expected one, so a client cannot find the token byte by
//! byte by timing its 401s. Rendering the 401 is left to each server.

use http::header::AUTHORIZATION;
use http::HeaderMap;

/// Whether `headers` carry `Authorization: Bearer <token>`, compared in constant time.
///
/// The scheme is matched in any case (`bearer`, `BEARER`), as upstream's bearer-token authenticator and RFC 7235
/// do, and whitespace around the token is ignored. An empty expected token matches nothing, so a server
/// configured without a token fails closed.
pub fn bearer_token_matches(headers: &HeaderMap, token: &str) -> bool {
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, given)| given.trim());
    match given {
        Some(given) => !token.is_empty() && constant_time_eq(given.as_bytes(), token.as_bytes()),
        None => false,
    }
}

/// Compares in time independent of where the slices differ. Only the length can leak, and a token's length is
/// no secret (berth's are 256 bits in a fixed encoding).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // `black_box` keeps the optimiser from turning the accumulation into an early exit at the first difference.
    a.iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(authorization: Option<&str>, expected: bool) {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(AUTHORIZATION, value.parse().unwrap());
        }
        assert_eq!(
            bearer_token_matches(&headers, "s3cret"),
            expected,
            "Authorization: {authorization:?}"
        );
    }

    #[test]
    fn only_the_exact_bearer_token_matches() {
        check(Some("Bearer s3cret"), true);
        check(Some("Bearer  s3cret "), true);
        check(None, false);
        check(Some("Bearer s3creT"), false);
        check(Some("Bearer s3cre"), false);
        check(Some("Bearer s3crets"), false);
        check(Some("Bearer "), false);
        check(Some("Basic s3cret"), false);
        check(Some("Bearers3cret"), false);
        check(Some("Bearer\ts3cret"), false);
        check(Some("s3cret"), false);
    }

    #[test]
    fn the_scheme_matches_in_any_case() {
        check(Some("bearer s3cret"), true);
        check(Some("BEARER s3cret"), true);
        check(Some("bEaReR s3cret"), true);
        check(Some("bearer s3creT"), false);
    }

    #[test]
    fn an_empty_expected_token_matches_nothing() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Bearer ".parse().unwrap());
        assert!(!bearer_token_matches(&headers, ""));
        headers.insert(AUTHORIZATION, "Bearer  ".parse().unwrap());
        assert!(!bearer_token_matches(&headers, ""));
    }

    #[test]
    fn slices_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"xbc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
