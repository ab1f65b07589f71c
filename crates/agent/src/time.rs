//! Conversions between chrono (the runtime's and the agent's clock type) and the jiff timestamps k8s-openapi uses.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;

/// A chrono time as jiff's.
pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp::new(t.timestamp(), i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A jiff timestamp as chrono's.
pub fn chrono(t: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), u32::try_from(t.subsec_nanosecond()).unwrap_or(0)).unwrap_or_default()
}

/// Now, as a Kubernetes `Time`.
pub fn now() -> Time {
    Time(timestamp(Utc::now()))
}

/// Now, as a Kubernetes `MicroTime`.
pub fn now_micro() -> MicroTime {
    MicroTime(timestamp(Utc::now()))
}
