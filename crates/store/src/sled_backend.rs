//! The sled backend: persists each committed batch atomically and durably, and reloads it on open.
//!
//! Everything lives in ONE sled tree (`berth`), split into key spaces by a leading tag byte:
//!
//! | sled key                 | value                                   | purpose                               |
//! |--------------------------|-----------------------------------------|---------------------------------------|
//! | `k` + key                | create_rev, mod_rev, value (see codec)  | the current state, loaded into memory |
//! | `l` + revision (8 B, BE) | the encoded event                       | retained history, for resuming        |
//! | `m/revision`             | u64 BE                                  | the current revision                  |
//! | `m/compacted`            | u64 BE                                  | the compacted revision                |
//!
//! One tree rather than one per key space, because sled applies a `Batch` to a single tree atomically (after a
//! crash, all of it or none of it is recovered); batches on separate trees are not atomic together, and sled's
//! multi-tree transactions are slower for no gain here. The revision counter is written in the same batch as the
//! data, so revisions never go backwards across restarts. sled by itself only flushes every 500 ms, so each
//! commit ends with an explicit `flush` (fsync): the engine acknowledges writes as soon as `commit` returns.
//!
//! This file deliberately knows nothing of preconditions, watches or reads after open: the engine serves those
//! from memory.

use std::path::Path;

use crate::codec;
use std::collections::HashMap;

use bytes::Bytes;

use crate::engine::{event_bytes, Engine, State, StoreConfig};
use crate::persist::{Commit, Persistence};
use crate::{Event, EventKind, Revision, StoreError};

const TREE: &str = "berth";
const KV_TAG: u8 = b'k';
const LOG_TAG: u8 = b'l';
const META_REVISION: &[u8] = b"m/revision";
const META_COMPACTED: &[u8] = b"m/compacted";

/// Marker for the sled backend: see [`SledStore`].
#[derive(Debug)]
pub enum Sled {}

/// A store persisted in a sled database directory. Every acknowledged write is on disk.
pub type SledStore = Engine<Sled>;

impl SledStore {
    /// Opens (creating if needed) the database at `path` with the default configuration, loading its state and
    /// retained history into memory. This blocks on disk I/O: call it at startup (or from `spawn_blocking`).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_config(path, StoreConfig::default())
    }

    /// Like [`SledStore::open`], with the given configuration. History beyond `history_limit` events or
    /// `history_bytes` bytes is compacted right away, and never read into memory.
    pub fn open_with_config(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self, StoreError> {
        let (backend, state) = SledBackend::open(path.as_ref(), &config)?;
        Engine::start(backend, state, config)
    }
}

/// The persistence half of [`SledStore`].
pub(crate) struct SledBackend {
    // Held so the database (and its file lock) stays open as long as the writer runs.
    _db: sled::Db,
    tree: sled::Tree,
}

impl SledBackend {
    /// Opens the database and reads back everything committed to it, except history beyond the configured
    /// bounds, which it compacts on disk.
    fn open(path: &Path, config: &StoreConfig) -> Result<(Self, State), StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(config.cache_bytes)
            .open()
            .map_err(sled_error("opening the database"))?;
        let tree = db.open_tree(TREE).map_err(sled_error("opening the tree"))?;
        let mut backend = SledBackend { _db: db, tree };
        let (state, persisted_compacted) = backend.load(config)?;
        if state.compacted != persisted_compacted {
            let commit = Commit {
                events: &[],
                revision: state.revision,
                compacted: state.compacted,
                previous_compacted: persisted_compacted,
            };
            backend.commit(&commit)?;
        }
        Ok((backend, state))
    }

    /// Loads the current keys, then the history newest first, stopping before the event that would take it past
    /// either bound: so a store whose history was written under larger bounds (or before there was a byte bound)
    /// opens within today's, however much it holds on disk. Returns the state and the compacted revision on disk.
    fn load(&self, config: &StoreConfig) -> Result<(State, Revision), StoreError> {
        let mut state = State {
            revision: self.meta(META_REVISION)?,
            compacted: self.meta(META_COMPACTED)?,
            ..State::default()
        };
        let persisted_compacted = state.compacted;
        for entry in self.tree.scan_prefix([KV_TAG]) {
            let (sled_key, value) = entry.map_err(sled_error("loading keys"))?;
            let key = std::str::from_utf8(&sled_key[1..]).map_err(|_| StoreError::Corrupt {
                detail: format!("key {:?} is not utf-8", &sled_key[1..]),
            })?;
            let kv = codec::decode_value(key.to_string(), &value)?;
            state.kv.insert(kv.key.clone(), kv);
        }
        // The log must hold exactly the revisions after the compacted one, in order: that is what the engine's
        // history invariant needs, and anything else means the database was not written by this code. Read
        // backwards, each entry must be the revision just below the previous one.
        let mut newest_first = Vec::new();
        let mut bytes = 0u64;
        let mut expected = state.revision;
        let mut values = SharedValues::default();
        for entry in self.tree.scan_prefix([LOG_TAG]).rev() {
            let (sled_key, value) = entry.map_err(sled_error("loading history"))?;
            if expected <= persisted_compacted || sled_key.as_ref() != log_key(expected) {
                return Err(StoreError::Corrupt {
                    detail: format!(
                        "history entry {:?} found where revision {expected} belongs",
                        &sled_key[1..]
                    ),
                });
            }
            let event = codec::decode_event(&value)?;
            if event.revision() != expected {
                return Err(StoreError::Corrupt {
                    detail: format!(
                        "history entry for revision {expected} holds revision {}",
                        event.revision()
                    ),
                });
            }
            let cost = event_bytes(&event);
            if newest_first.len() as u64 >= config.history_limit || bytes + cost > config.history_bytes {
                // Everything from here back is beyond the bounds: compacted, and never decoded.
                state.compacted = expected;
                break;
            }
            bytes += cost;
            newest_first.push(values.share(event, &state));
            expected = Revision(expected.0 - 1);
        }
        if state.compacted == persisted_compacted && expected != persisted_compacted {
            return Err(StoreError::Corrupt {
                detail: format!(
                    "history starts at revision {} but the store is compacted at {persisted_compacted}",
                    expected.0 + 1
                ),
            });
        }
        state.push_history(newest_first.into_iter().rev());
        Ok((state, persisted_compacted))
    }

    fn meta(&self, name: &[u8]) -> Result<Revision, StoreError> {
        match self.tree.get(name).map_err(sled_error("reading metadata"))? {
            None => Ok(Revision::ZERO),
            Some(bytes) => {
                let array: [u8; 8] = bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    detail: format!(
                        "metadata {:?} is {} bytes, not 8",
                        String::from_utf8_lossy(name),
                        bytes.len()
                    ),
                })?;
                Ok(Revision(u64::from_be_bytes(array)))
            }
        }
    }
}

impl Persistence for SledBackend {
    fn commit(&mut self, commit: &Commit<'_>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for event in commit.events {
            let key = kv_key(&event.kv.key);
            match event.kind {
                EventKind::Put => batch.insert(key, codec::encode_value(&event.kv)),
                EventKind::Delete => batch.remove(key),
            }
            batch.insert(&log_key(event.revision())[..], codec::encode_event(event));
        }
        // A batch is a map from key to final operation, so dropping an event written earlier in this same batch
        // (compacting past it) correctly leaves it out.
        for revision in commit.previous_compacted.0 + 1..=commit.compacted.0 {
            batch.remove(&log_key(Revision(revision))[..]);
        }
        batch.insert(META_REVISION, &commit.revision.0.to_be_bytes()[..]);
        batch.insert(META_COMPACTED, &commit.compacted.0.to_be_bytes()[..]);
        self.tree.apply_batch(batch).map_err(sled_error("committing a batch"))?;
        self.tree.flush().map_err(sled_error("flushing a batch to disk"))?;
        Ok(())
    }
}

/// Makes the history loaded at start share value buffers the way the running engine's does.
///
/// On disk each event holds its own copy of its value and of the previous value, but in a running store an
/// update's previous value *is* the value of the event before it (one reference-counted buffer), and the newest
/// value of a key is the mirror's. Loading without sharing made a restarted server use more memory than the same
/// server before the restart (1.6 GB against 1.2 GB in the attack that found it). Events arrive newest first.
#[derive(Default)]
struct SharedValues {
    /// The previous values of events already loaded, by key and revision, for the older event that wrote them.
    wanted: HashMap<(String, Revision), Bytes>,
}

impl SharedValues {
    fn share(&mut self, mut event: Event, state: &State) -> Event {
        let written = (event.kv.key.clone(), event.kv.mod_revision);
        if let Some(value) = self.wanted.remove(&written) {
            event.kv.value = value;
        } else if let Some(current) = state.kv.get(&event.kv.key) {
            if current.mod_revision == event.kv.mod_revision && current.value == event.kv.value {
                event.kv.value = current.value.clone();
            }
        }
        if let Some(prev) = &mut event.prev {
            if event.kind == EventKind::Delete && prev.value == event.kv.value {
                // A delete carries the last value twice, as its own and as the previous one.
                prev.value = event.kv.value.clone();
            }
            self.wanted
                .insert((prev.key.clone(), prev.mod_revision), prev.value.clone());
        }
        event
    }
}

fn kv_key(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(KV_TAG);
    out.extend_from_slice(key.as_bytes());
    out
}

/// Big-endian so that sled's byte order is revision order.
fn log_key(revision: Revision) -> [u8; 9] {
    let mut out = [0; 9];
    out[0] = LOG_TAG;
    out[1..].copy_from_slice(&revision.0.to_be_bytes());
    out
}

fn sled_error(operation: &'static str) -> impl Fn(sled::Error) -> StoreError {
    move |err| match err {
        sled::Error::Corruption { .. } => StoreError::Corrupt {
            detail: format!("{operation}: {err}"),
        },
        other => StoreError::Io {
            operation,
            source: other.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::StreamExt;

    use super::*;
    use crate::{event_bytes, Store, StoreError};

    fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[tokio::test]
    async fn reopening_preserves_data_revisions_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = SledStore::open(&path).unwrap();
            store.create("/a", b("1")).await.unwrap(); // 1
            store.create("/b", b("1")).await.unwrap(); // 2
            store.update("/a", b("2"), None).await.unwrap(); // 3
            store.delete("/b", None).await.unwrap(); // 4
            store.create("/c", b("1")).await.unwrap(); // 5
            store.compact(Revision(1)).await.unwrap();
        }
        let store = SledStore::open(&path).unwrap();
        assert_eq!(store.current_revision(), Revision(5));
        assert_eq!(store.compacted_revision(), Revision(1));
        let a = store.get("/a").await.unwrap().unwrap();
        assert_eq!(
            (a.value, a.create_revision, a.mod_revision),
            (b("2"), Revision(1), Revision(3))
        );
        assert_eq!(store.get("/b").await.unwrap(), None);

        // The history came back too: old snapshots and resumed watches work across the restart.
        let (at_two, _) = store.list("/", Some(Revision(2))).await.unwrap();
        let values: Vec<_> = at_two.iter().map(|kv| (kv.key.as_str(), kv.value.clone())).collect();
        assert_eq!(values, [("/a", b("1")), ("/b", b("1"))]);
        let mut watch = store.watch("/", Revision(3)).await.unwrap();
        let deleted = watch.next().await.unwrap().unwrap();
        assert_eq!(
            (deleted.kind, deleted.kv.key.as_str(), deleted.revision()),
            (EventKind::Delete, "/b", Revision(4))
        );
        assert_eq!(watch.next().await.unwrap().unwrap().revision(), Revision(5));
        assert!(matches!(
            store.watch("/", Revision(0)).await.err(),
            Some(StoreError::Compacted { .. })
        ));

        // Revisions carry on from where they were; they never go backwards.
        assert_eq!(store.create("/d", b("1")).await.unwrap().mod_revision, Revision(6));
        assert_eq!(watch.next().await.unwrap().unwrap().revision(), Revision(6));
    }

    #[tokio::test]
    async fn reopening_with_a_smaller_history_limit_compacts_the_excess() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = SledStore::open(&path).unwrap();
            for i in 0..10 {
                store.create(&format!("/k{i}"), b("v")).await.unwrap();
            }
        }
        let small = StoreConfig {
            history_limit: 4,
            ..StoreConfig::default()
        };
        {
            let store = SledStore::open_with_config(&path, small.clone()).unwrap();
            assert_eq!(store.compacted_revision(), Revision(6));
            let mut watch = store.watch("/", Revision(6)).await.unwrap();
            assert_eq!(watch.next().await.unwrap().unwrap().revision(), Revision(7));
        }
        // The trim was persisted, not just applied in memory.
        let store = SledStore::open(&path).unwrap();
        assert_eq!(store.compacted_revision(), Revision(6));
        assert_eq!(store.list("/", None).await.unwrap().0.len(), 10);
    }

    #[tokio::test]
    async fn reopening_loads_no_more_history_than_the_byte_bound_and_shares_values_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let value = |n: u8| Bytes::from(vec![n; 10_000]);
        {
            // Written under a bound that keeps all of it, as an older berth (count-bounded only) would have.
            let store = SledStore::open(&path).unwrap();
            store.create("/k", value(0)).await.unwrap();
            for n in 1..=40 {
                store.update("/k", value(n), None).await.unwrap();
            }
            store.delete("/k", None).await.unwrap(); // 42
            store.create("/k", value(99)).await.unwrap(); // 43
        }
        let small = StoreConfig {
            history_bytes: 100_000,
            ..StoreConfig::default()
        };
        {
            let (_, state) = SledBackend::open(&path, &small).unwrap();
            assert!(state.history_bytes <= small.history_bytes, "{}", state.history_bytes);
            let loaded: u64 = state.history.iter().map(event_bytes).sum();
            assert_eq!(loaded, state.history_bytes);
            // Updates cost 160 + 2 × (1 + 10,000) bytes, so 4 of them and the last create (which has no
            // previous value) fit in 100,000 bytes.
            assert_eq!(state.compacted, Revision(38));
            assert_eq!(state.history.len(), 5);
        }
        let store = SledStore::open_with_config(&path, small).unwrap();
        assert_eq!(store.compacted_revision(), Revision(38));
        let mut watch = store.watch("/", Revision(38)).await.unwrap();
        let mut events = Vec::new();
        for _ in 0..5 {
            events.push(watch.next().await.unwrap().unwrap());
        }
        // As in the running store, an update's previous value is the same buffer as the value before it, a
        // delete's value is its previous value, and the newest value is the mirror's.
        for pair in events[..4].windows(2) {
            let prev = pair[1].prev.as_ref().unwrap();
            assert_eq!(
                prev.value.as_ptr(),
                pair[0].kv.value.as_ptr(),
                "at {}",
                pair[1].revision()
            );
        }
        assert!(events[4].prev.is_none(), "the last event re-creates the key");
        let delete = &events[3];
        assert_eq!(delete.kind, EventKind::Delete);
        assert_eq!(delete.kv.value.as_ptr(), delete.prev.as_ref().unwrap().value.as_ptr());
        let current = store.get("/k").await.unwrap().unwrap();
        assert_eq!(events[4].kv.value.as_ptr(), current.value.as_ptr());
        drop(watch);
        drop(store);

        // The trim was persisted: a store opened with the defaults finds the same compacted revision.
        let store = SledStore::open(&path).unwrap();
        assert_eq!(store.compacted_revision(), Revision(38));
        assert_eq!(store.current_revision(), Revision(43));
    }

    #[tokio::test]
    async fn a_database_already_open_elsewhere_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(dir.path()).unwrap();
        let err = SledStore::open(dir.path()).err().unwrap();
        assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    }

    #[test]
    fn damaged_contents_fail_to_open_as_corrupt() {
        let check = |damage: &dyn Fn(&sled::Tree), what: &str| {
            let dir = tempfile::tempdir().unwrap();
            {
                let db = sled::open(dir.path()).unwrap();
                let tree = db.open_tree(TREE).unwrap();
                damage(&tree);
                tree.flush().unwrap();
            }
            let err = SledStore::open(dir.path()).err();
            assert!(matches!(err, Some(StoreError::Corrupt { .. })), "{what}: {err:?}");
        };
        check(
            &|tree| drop(tree.insert(META_REVISION, &b"short"[..])),
            "short metadata",
        );
        check(&|tree| drop(tree.insert(kv_key("/k"), &[1u8, 2, 3][..])), "short value");
        check(
            &|tree| drop(tree.insert(&[KV_TAG, 0xff][..], &[0u8; 16][..])),
            "non-utf-8 key",
        );
        check(
            &|tree| drop(tree.insert(&log_key(Revision(1))[..], &b"garbage"[..])),
            "undecodable event",
        );
        check(
            &|tree| drop(tree.insert(META_REVISION, &7u64.to_be_bytes()[..])),
            "revision without history",
        );
    }
}
