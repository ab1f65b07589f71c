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
        let db = sled::Config::new().path(path).open().map_err(sled_error("opening the database"))?;
        let tree = db.open_tree(TREE).map_err(sled_error("opening the tree"))?;
        let mut backend = SledBackend { _db: db, tree };
        let mut state = backend.load()?;
        if state.revision.0 - state.compacted.0 > history_limit {
            let compacted = Revision(state.revision.0 - history_limit);
            let commit =
                Commit { events: &[], revision: state.revision, compacted, previous_compacted: state.compacted };
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
            let key = std::str::from_utf8(&sled_key[1..])
                .map_err(|_| StoreError::Corrupt { detail: format!("key {:?} is not utf-8", &sled_key[1..]) })?;
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
                    detail: format!("history entry {:?} found where revision {expected} belongs", &sled_key[1..]),
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
                    detail: format!("metadata {:?} is {} bytes, not 8", String::from_utf8_lossy(name), bytes.len()),
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
        sled::Error::Corruption { .. } => StoreError::Corrupt { detail: format!("{operation}: {err}") },
        other => StoreError::Io { operation, source: other.into() },
    }
}
