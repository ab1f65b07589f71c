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
use crate::engine::{Engine, State, StoreConfig};
use crate::persist::{Commit, Persistence};
use crate::{EventKind, Revision, StoreError};

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

    /// Like [`SledStore::open`], with the given configuration. A `history_limit` smaller than the retained history
    /// compacts the excess right away.
    pub fn open_with_config(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self, StoreError> {
        let (backend, state) = SledBackend::open(path.as_ref(), config.history_limit)?;
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
    /// Opens the database and reads back everything committed to it.
    fn open(path: &Path, history_limit: u64) -> Result<(Self, State), StoreError> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(sled_error("opening the database"))?;
        let tree = db.open_tree(TREE).map_err(sled_error("opening the tree"))?;
        let mut backend = SledBackend { _db: db, tree };
        let mut state = backend.load()?;
        if state.revision.0 - state.compacted.0 > history_limit {
            let compacted = Revision(state.revision.0 - history_limit);
            let commit = Commit {
                events: &[],
                revision: state.revision,
                compacted,
                previous_compacted: state.compacted,
            };
            backend.commit(&commit)?;
            while state.history.front().is_some_and(|event| event.revision() <= compacted) {
                state.history.pop_front();
            }
            state.compacted = compacted;
        }
        Ok((backend, state))
    }

    fn load(&self) -> Result<State, StoreError> {
        let mut state = State {
            revision: self.meta(META_REVISION)?,
            compacted: self.meta(META_COMPACTED)?,
            ..State::default()
        };
        for entry in self.tree.scan_prefix([KV_TAG]) {
            let (sled_key, value) = entry.map_err(sled_error("loading keys"))?;
            let key = std::str::from_utf8(&sled_key[1..]).map_err(|_| StoreError::Corrupt {
                detail: format!("key {:?} is not utf-8", &sled_key[1..]),
            })?;
            let kv = codec::decode_value(key.to_string(), &value)?;
            state.kv.insert(kv.key.clone(), kv);
        }
        // The log must hold exactly the revisions after the compacted one, in order: that is what the engine's
        // history invariant needs, and anything else means the database was not written by this code.
        for entry in self.tree.scan_prefix([LOG_TAG]) {
            let (sled_key, value) = entry.map_err(sled_error("loading history"))?;
            let event = codec::decode_event(&value)?;
            let expected = Revision(state.compacted.0 + 1 + state.history.len() as u64);
            if sled_key.as_ref() != log_key(expected) || event.revision() != expected {
                return Err(StoreError::Corrupt {
                    detail: format!(
                        "history entry {:?} found where revision {expected} belongs",
                        &sled_key[1..]
                    ),
                });
            }
            state.history.push_back(event);
        }
        let last = Revision(state.compacted.0 + state.history.len() as u64);
        if last != state.revision {
            return Err(StoreError::Corrupt {
                detail: format!("history ends at revision {last} but the store is at {}", state.revision),
            });
        }
        Ok(state)
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
    use crate::{Store, StoreError};

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
