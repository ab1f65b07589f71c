//! The on-disk binary encoding of stored values and history events: a tiny length-prefixed format.
//!
//! Layout (all integers big-endian):
//! - a stored value: `create_revision u64 | mod_revision u64 | value bytes (the rest)`; the key is the sled key.
//! - a history event: `version u8 (=1) | kind u8 (0 put, 1 delete) | kv | has_prev u8 | [prev kv]`, where a kv is
//!   `key_len u32 | key utf-8 | create_revision u64 | mod_revision u64 | value_len u32 | value`.
//!
//! Decoding never panics: truncated or malformed input is a [`StoreError::Corrupt`]. This module does no I/O and
//! knows nothing about sled's key layout (see `sled_backend`).

use bytes::Bytes;

use crate::{Event, EventKind, KeyValue, Revision, StoreError};

/// The event format version written today; bump it if the layout ever changes.
const EVENT_VERSION: u8 = 1;

/// Encodes the value half of a current key (the key itself lives in the sled key).
pub(crate) fn encode_value(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.0.to_be_bytes());
    out.extend_from_slice(&kv.mod_revision.0.to_be_bytes());
    out.extend_from_slice(&kv.value);
    out
}

/// Decodes what [`encode_value`] wrote, given the key it was stored under.
pub(crate) fn decode_value(key: String, bytes: &[u8]) -> Result<KeyValue, StoreError> {
    let mut reader = Reader {
        bytes,
        what: "stored value",
    };
    let create_revision = Revision(reader.u64()?);
    let mod_revision = Revision(reader.u64()?);
    let value = Bytes::copy_from_slice(reader.rest());
    Ok(KeyValue {
        key,
        value,
        create_revision,
        mod_revision,
    })
}

/// Encodes a history event.
pub(crate) fn encode_event(event: &Event) -> Vec<u8> {
    let prev_len = event.prev.as_ref().map_or(0, kv_len);
    let mut out = Vec::with_capacity(3 + kv_len(&event.kv) + prev_len);
    out.push(EVENT_VERSION);
    out.push(match event.kind {
        EventKind::Put => 0,
        EventKind::Delete => 1,
    });
    put_kv(&mut out, &event.kv);
    match &event.prev {
        Some(prev) => {
            out.push(1);
            put_kv(&mut out, prev);
        }
        None => out.push(0),
    }
    out
}

/// Decodes what [`encode_event`] wrote.
pub(crate) fn decode_event(bytes: &[u8]) -> Result<Event, StoreError> {
    let mut reader = Reader {
        bytes,
        what: "history event",
    };
    let version = reader.u8()?;
    if version != EVENT_VERSION {
        return Err(reader.corrupt(format!("unknown version {version}")));
    }
    let kind = match reader.u8()? {
        0 => EventKind::Put,
        1 => EventKind::Delete,
        other => return Err(reader.corrupt(format!("unknown event kind {other}"))),
    };
    let kv = reader.kv()?;
    let prev = match reader.u8()? {
        0 => None,
        1 => Some(reader.kv()?),
        other => return Err(reader.corrupt(format!("bad prev flag {other}"))),
    };
    if !reader.rest().is_empty() {
        return Err(reader.corrupt("trailing bytes".to_string()));
    }
    Ok(Event { kind, kv, prev })
}

fn kv_len(kv: &KeyValue) -> usize {
    4 + kv.key.len() + 16 + 4 + kv.value.len()
}

fn put_kv(out: &mut Vec<u8>, kv: &KeyValue) {
    put_len_prefixed(out, kv.key.as_bytes());
    out.extend_from_slice(&kv.create_revision.0.to_be_bytes());
    out.extend_from_slice(&kv.mod_revision.0.to_be_bytes());
    put_len_prefixed(out, &kv.value);
}

fn put_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys and values are far below 4 GiB (the API server caps request bodies well under that); saturating keeps
    // this total, and decoding such a record would then fail loudly as corrupt rather than misread.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A cursor over a byte slice whose every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt {
            detail: format!("{}: {detail}", self.what),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.bytes.len() < n {
            return Err(self.corrupt(format!("truncated: wanted {n} bytes, {} left", self.bytes.len())));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        let mut buf = [0; 4];
        buf.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(buf))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        let mut buf = [0; 8];
        buf.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(buf))
    }

    fn len_prefixed(&mut self) -> Result<&'a [u8], StoreError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn kv(&mut self) -> Result<KeyValue, StoreError> {
        let key = std::str::from_utf8(self.len_prefixed()?)
            .map_err(|_| self.corrupt("key is not utf-8".to_string()))?
            .to_string();
        let create_revision = Revision(self.u64()?);
        let mod_revision = Revision(self.u64()?);
        let value = Bytes::copy_from_slice(self.len_prefixed()?);
        Ok(KeyValue {
            key,
            value,
            create_revision,
            mod_revision,
        })
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &'static [u8], create: u64, modified: u64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Bytes::from_static(value),
            create_revision: Revision(create),
            mod_revision: Revision(modified),
        }
    }

    #[test]
    fn values_and_events_round_trip() {
        let value = kv("/registry/pods/default/web", b"{\"kind\":\"Pod\"}", 3, 9);
        assert_eq!(decode_value(value.key.clone(), &encode_value(&value)).unwrap(), value);

        let check = |event: Event| assert_eq!(decode_event(&encode_event(&event)).unwrap(), event);
        check(Event {
            kind: EventKind::Put,
            kv: kv("/a", b"1", 1, 1),
            prev: None,
        });
        check(Event {
            kind: EventKind::Put,
            kv: kv("/a", b"2", 1, 2),
            prev: Some(kv("/a", b"1", 1, 1)),
        });
        check(Event {
            kind: EventKind::Delete,
            kv: kv("/a", b"2", 1, 3),
            prev: Some(kv("/a", b"2", 1, 2)),
        });
        check(Event {
            kind: EventKind::Put,
            kv: kv("/ünïcode", b"", 7, 7),
            prev: None,
        });
    }

    #[test]
    fn every_truncation_of_an_event_is_reported_as_corrupt() {
        let event = Event {
            kind: EventKind::Delete,
            kv: kv("/a/b", b"xyz", 1, 3),
            prev: Some(kv("/a/b", b"x", 1, 2)),
        };
        let bytes = encode_event(&event);
        for len in 0..bytes.len() {
            assert!(
                matches!(decode_event(&bytes[..len]), Err(StoreError::Corrupt { .. })),
                "truncated to {len} bytes"
            );
        }
    }

    #[test]
    fn malformed_events_are_corrupt_not_panics() {
        let good = encode_event(&Event {
            kind: EventKind::Put,
            kv: kv("/k", b"v", 1, 1),
            prev: None,
        });
        let check = |bytes: Vec<u8>, why: &str| {
            assert!(matches!(decode_event(&bytes), Err(StoreError::Corrupt { .. })), "{why}");
        };
        let mut bad_version = good.clone();
        bad_version[0] = 9;
        check(bad_version, "unknown version");
        let mut bad_kind = good.clone();
        bad_kind[1] = 7;
        check(bad_kind, "unknown kind");
        let mut trailing = good.clone();
        trailing.push(0);
        check(trailing, "trailing byte");
        let mut huge_len = good.clone();
        huge_len[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
        check(huge_len, "key length past the end");
        let mut bad_utf8 = good;
        bad_utf8[6] = 0xff;
        check(bad_utf8, "key not utf-8");
    }

    #[test]
    fn a_value_shorter_than_its_header_is_corrupt() {
        assert!(matches!(
            decode_value("/k".into(), &[0; 15]),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
