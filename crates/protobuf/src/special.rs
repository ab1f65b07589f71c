//! The few apimachinery messages whose JSON form is not an object of their fields: Time and MicroTime (RFC3339
//! strings), Duration (a Go duration string), IntOrString (a number or a string), Quantity (its string) and
//! RawExtension/FieldsV1 (embedded raw JSON). Each mirrors the Go type's `MarshalJSON`, because the JSON berth
//! stores must be what the same object would have carried had the client sent JSON. It does not walk ordinary
//! messages; `decode.rs` does, and calls [`Special::decode`] when it meets one of these.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::wire::{Reader, WireValue};
use crate::ProtobufError;

/// A message with a custom JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    /// `meta.v1.Time {int64 seconds = 1; int32 nanos = 2}` → `"2026-01-02T15:04:05Z"` (seconds precision).
    Time,
    /// `meta.v1.MicroTime`, same fields → `"2026-01-02T15:04:05.123456Z"`.
    MicroTime,
    /// `meta.v1.Duration {int64 duration = 1}` (nanoseconds) → `"1h2m3.5s"`.
    Duration,
    /// `util.intstr.IntOrString {int64 type = 1; int32 intVal = 2; string strVal = 3}` → `80` or `"http"`.
    IntOrString,
    /// `api.resource.Quantity {string string = 1}` → `"500m"`.
    Quantity,
    /// `runtime.RawExtension {bytes raw = 1}` and `meta.v1.FieldsV1 {bytes Raw = 1}` → the embedded JSON.
    RawJson,
}

/// `time.Time{}.Unix()` in Go: the zero time (0001-01-01T00:00:00Z), which `metav1.Time` marshals as `null`.
const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;

impl Special {
    /// The special form of the message with this full proto name, if it has one.
    pub(crate) fn of(message_name: &str) -> Option<Special> {
        Some(match message_name {
            "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => Special::Time,
            "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => Special::MicroTime,
            "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => Special::Duration,
            "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => Special::IntOrString,
            "k8s.io.apimachinery.pkg.api.resource.Quantity" => Special::Quantity,
            "k8s.io.apimachinery.pkg.runtime.RawExtension" | "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => {
                Special::RawJson
            }
            _ => return None,
        })
    }

    /// Converts the message's bytes to its JSON value.
    pub(crate) fn decode(self, bytes: &[u8]) -> Result<Value, ProtobufError> {
        let [f1, f2, f3] = first_three_fields(bytes)?;
        match self {
            Special::Time | Special::MicroTime => {
                // Go's Time.Marshal writes nothing for the zero time, and Unmarshal of nothing gives the zero time,
                // which MarshalJSON renders as null (as in `"creationTimestamp": null`).
                if bytes.is_empty() {
                    return Ok(Value::Null);
                }
                let seconds = varint(f1, "seconds")? as i64;
                let nanos = varint(f2, "nanos")? as i64 as i32;
                format_time(seconds, nanos, self == Special::MicroTime)
            }
            Special::Duration => Ok(Value::String(go_duration(varint(f1, "duration")? as i64))),
            Special::IntOrString => match varint(f1, "type")? as i64 {
                0 => Ok(Value::from(varint(f2, "intVal")? as i64 as i32)),
                1 => Ok(Value::String(string(f3, "strVal")?)),
                other => Err(invalid(format!("IntOrString has unknown type {other}"))),
            },
            Special::Quantity => {
                // A zero Quantity prints as "0" in Go.
                let s = string(f1, "string")?;
                Ok(Value::String(if s.is_empty() { "0".to_owned() } else { s }))
            }
            Special::RawJson => {
                let raw = match f1 {
                    None => &[][..],
                    Some(WireValue::Bytes(b)) => b,
                    Some(other) => return Err(wrong_wire(other, "raw")),
                };
                // Go's RawExtension/FieldsV1 MarshalJSON writes `null` for no bytes and the bytes verbatim otherwise.
                if raw.is_empty() {
                    return Ok(Value::Null);
                }
                serde_json::from_slice(raw).map_err(|e| invalid(format!("embedded raw object is not JSON: {e}")))
            }
        }
    }
}

/// The last occurrence (proto2: last one wins) of fields 1, 2 and 3; other fields are skipped.
fn first_three_fields(bytes: &[u8]) -> Result<[Option<WireValue<'_>>; 3], ProtobufError> {
    let mut out = [None; 3];
    let mut r = Reader::new(bytes);
    while let Some((tag, value)) = r.next_field().map_err(ProtobufError::wire)? {
        if let Some(slot) = out.get_mut((tag as usize).wrapping_sub(1)) {
            *slot = Some(value);
        }
    }
    Ok(out)
}

fn varint(value: Option<WireValue<'_>>, name: &str) -> Result<u64, ProtobufError> {
    match value {
        None => Ok(0),
        Some(WireValue::Varint(v)) => Ok(v),
        Some(other) => Err(wrong_wire(other, name)),
    }
}

fn string(value: Option<WireValue<'_>>, name: &str) -> Result<String, ProtobufError> {
    match value {
        None => Ok(String::new()),
        // Go's generated unmarshallers do not validate UTF-8 and its JSON encoder replaces invalid bytes with
        // U+FFFD; a lossy conversion does the same.
        Some(WireValue::Bytes(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
        Some(other) => Err(wrong_wire(other, name)),
    }
}

fn wrong_wire(value: WireValue<'_>, name: &str) -> ProtobufError {
    invalid(format!("{} value for field {name}", value.kind_name()))
}

fn invalid(reason: String) -> ProtobufError {
    ProtobufError::InvalidValue {
        path: String::new(),
        reason,
    }
}

/// RFC3339 in UTC as `metav1.Time` (whole seconds) or `metav1.MicroTime` (six fractional digits) marshal it.
fn format_time(seconds: i64, nanos: i32, micro: bool) -> Result<Value, ProtobufError> {
    // Go's time.Unix normalises nanoseconds outside [0, 1e9) into the seconds.
    let nanos = i64::from(nanos);
    let seconds = seconds
        .checked_add(nanos.div_euclid(1_000_000_000))
        .ok_or_else(|| invalid("time out of range".into()))?;
    let sub = nanos.rem_euclid(1_000_000_000) as u32;
    if seconds == GO_ZERO_TIME_UNIX && sub == 0 {
        return Ok(Value::Null);
    }
    let t: DateTime<Utc> =
        DateTime::from_timestamp(seconds, sub).ok_or_else(|| invalid(format!("time {seconds}s out of range")))?;
    // Go's Time.MarshalJSON refuses years outside [0, 9999], which RFC3339 cannot express.
    let year = chrono::Datelike::year(&t);
    if !(0..=9999).contains(&year) {
        return Err(invalid(format!("time year {year} outside [0, 9999]")));
    }
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Ok(Value::String(t.format(format).to_string()))
}

/// Go's `time.Duration.String()`: `0s`, `1.5µs`, `100ms`, `1m30s`, `2h0m0s`, `-1.5s`.
pub(crate) fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u < 1_000_000_000 {
        // Below a second Go picks the largest unit that keeps an integer part: ns, µs or ms.
        let (unit, digits) = match u {
            0..1_000 => ("ns", 0),
            1_000..1_000_000 => ("µs", 3),
            _ => ("ms", 6),
        };
        return format!("{sign}{}{unit}", with_fraction(u, digits));
    }
    let whole_seconds = u / 1_000_000_000;
    let seconds = with_fraction(u % 60_000_000_000, 9);
    let minutes = (whole_seconds / 60) % 60;
    let hours = whole_seconds / 3600;
    match (hours, whole_seconds / 60) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, _) => format!("{sign}{minutes}m{seconds}s"),
        _ => format!("{sign}{hours}h{minutes}m{seconds}s"),
    }
}

/// `value / 10^digits` with its fraction, trailing zeros (and a bare point) dropped: `1500, 3` → `1.5`.
fn with_fraction(value: u64, digits: u32) -> String {
    let scale = 10u64.pow(digits);
    let (int, frac) = (value / scale, value % scale);
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{frac:0width$}", width = digits as usize);
    format!("{int}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_strings_match_go() {
        let check = |nanos: i64, expected: &str| assert_eq!(go_duration(nanos), expected, "{nanos}");
        check(0, "0s");
        check(1, "1ns");
        check(1_500, "1.5µs");
        check(100_000_000, "100ms");
        check(1_234_567, "1.234567ms");
        check(1_000_000_000, "1s");
        check(1_500_000_000, "1.5s");
        check(90_000_000_000, "1m30s");
        check(3_600_000_000_000, "1h0m0s");
        check(3_723_000_000_001, "1h2m3.000000001s");
        check(-1_500_000_000, "-1.5s");
        check(i64::MIN, "-2562047h47m16.854775808s");
        check(i64::MAX, "2562047h47m16.854775807s");
    }

    #[test]
    fn times_render_like_metav1_time_and_microtime() {
        let check = |seconds: i64, nanos: i32, micro: bool, expected: Value| {
            assert_eq!(
                format_time(seconds, nanos, micro).ok(),
                Some(expected),
                "{seconds} {nanos} {micro}"
            );
        };
        check(1_767_366_305, 0, false, "2026-01-02T15:05:05Z".into());
        check(1_767_366_305, 999_999_999, false, "2026-01-02T15:05:05Z".into());
        check(1_767_366_305, 123_456_789, true, "2026-01-02T15:05:05.123456Z".into());
        check(1_767_366_305, 0, true, "2026-01-02T15:05:05.000000Z".into());
        check(0, 0, false, "1970-01-01T00:00:00Z".into());
        check(GO_ZERO_TIME_UNIX, 0, false, Value::Null);
        assert!(format_time(i64::MAX, 0, false).is_err());
        assert!(
            format_time(300_000_000_000, 0, false).is_err(),
            "year 11476 is outside RFC3339"
        );
    }
}
