//! Query-string parameters of API requests, form-decoded and parsed the way upstream does (booleans as Go's
//! `strconv.ParseBool`, so the Python client's `watch=True` works). Unknown parameters are ignored.

use berth_api::ApiError;

/// The query parameters berth acts on.
#[derive(Debug, Default, Clone)]
pub struct Params {
    /// `watch=true`.
    pub watch: bool,
    /// `labelSelector`.
    pub label_selector: Option<String>,
    /// `fieldSelector`.
    pub field_selector: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
    /// `timeoutSeconds` (watch).
    pub timeout_seconds: Option<u64>,
    /// `allowWatchBookmarks`.
    pub allow_bookmarks: bool,
    /// `sendInitialEvents` (WatchList).
    pub send_initial_events: Option<bool>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `fieldValidation` (Strict, Warn, Ignore), parsed by `registry::FieldValidation::parse`.
    pub field_validation: Option<String>,
    /// `includeObject` for Table output (None, Metadata, Object).
    pub include_object: Option<String>,
    /// `gracePeriodSeconds` (delete).
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy` (delete).
    pub propagation_policy: Option<String>,
    /// `limit` (list).
    pub limit: Option<usize>,
    /// `continue` (list).
    pub continue_token: Option<String>,
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(name: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "invalid value {v:?} for boolean parameter {name:?}"
        ))),
    }
}

fn parse_int<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ApiError> {
    v.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid value {v:?} for integer parameter {name:?}")))
}

impl Params {
    /// Parses a raw query string.
    pub fn parse(query: Option<&str>) -> Result<Params, ApiError> {
        let mut p = Params::default();
        let Some(q) = query else { return Ok(p) };
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            let v = v.as_ref();
            match k.as_ref() {
                "watch" => p.watch = parse_bool("watch", v)?,
                "labelSelector" => p.label_selector = Some(v.to_string()),
                "fieldSelector" => p.field_selector = Some(v.to_string()),
                "resourceVersion" => p.resource_version = Some(v.to_string()),
                "resourceVersionMatch" => p.resource_version_match = Some(v.to_string()),
                "timeoutSeconds" => p.timeout_seconds = Some(parse_int("timeoutSeconds", v)?),
                "allowWatchBookmarks" => p.allow_bookmarks = parse_bool("allowWatchBookmarks", v)?,
                "sendInitialEvents" => p.send_initial_events = Some(parse_bool("sendInitialEvents", v)?),
                "dryRun" => p.dry_run = !v.is_empty(),
                "fieldValidation" => p.field_validation = Some(v.to_string()),
                "includeObject" => p.include_object = Some(v.to_string()),
                "gracePeriodSeconds" => p.grace_period_seconds = Some(parse_int("gracePeriodSeconds", v)?),
                "propagationPolicy" => p.propagation_policy = Some(v.to_string()),
                "limit" => p.limit = Some(parse_int("limit", v)?),
                "continue" => p.continue_token = Some(v.to_string()),
                _ => {}
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_parse_like_go() {
        for t in ["1", "t", "T", "true", "TRUE", "True"] {
            assert!(parse_bool("x", t).unwrap());
        }
        for f in ["0", "f", "F", "false", "FALSE", "False"] {
            assert!(!parse_bool("x", f).unwrap());
        }
        assert_eq!(parse_bool("x", "yes").unwrap_err().code, 400);
    }

    #[test]
    fn selectors_are_percent_decoded() {
        let p = Params::parse(Some(
            "labelSelector=app%3Dweb&fieldSelector=metadata.name%3Dx&watch=True",
        ))
        .unwrap();
        assert_eq!(p.label_selector.as_deref(), Some("app=web"));
        assert_eq!(p.field_selector.as_deref(), Some("metadata.name=x"));
        assert!(p.watch);
    }

    #[test]
    fn unknown_parameters_are_ignored() {
        let p = Params::parse(Some("timeout=32s&pretty=true&fieldManager=kubectl")).unwrap();
        assert!(!p.watch);
    }
}
