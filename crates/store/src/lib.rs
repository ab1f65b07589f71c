//! A narrow, revision-based key-value store: the only place berth's state lives.
//!
//! The shape follows etcd's KV API (and kine's `Backend`, which reproduces it over SQL): every successful write
//! gets the next value of one global counter, the *revision*, and that number doubles as the Kubernetes
//! `resourceVersion` of the object written. Keys are strings such as `/registry/apps/deployments/default/web` and
//! values are opaque bytes (the object's JSON); this crate never looks inside them. Optimistic concurrency works
//! the way the API server needs it: an update or delete may name the `mod_revision` the caller read, and fails
//! with [`StoreError::Conflict`] if someone wrote in between. Lists are consistent snapshots tagged with the
//! revision they reflect, and a watch can resume from any retained revision without gaps, which is what lets
//! `kubectl get -w` and informers list-then-watch.
//!
//! Two backends share one engine ([`Engine`]): [`MemoryStore`] keeps nothing across restarts, [`SledStore`]
//! persists to a sled database and acknowledges a write only after it is on disk.
//!
//! This crate deliberately knows nothing about Kubernetes objects, namespaces, selectors or HTTP: those belong
//! to the API server, which is the only crate that talks to the store.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), berth_store::StoreError> {
//! use berth_store::{MemoryStore, Revision, Store, StoreError};
//! use bytes::Bytes;
//! use futures::StreamExt;
//!
//! let store = MemoryStore::new();
//! let key = "/registry/configmaps/default/app";
//! let created = store.create(key, Bytes::from_static(b"{}")).await?;
//! let mut watch = store.watch("/registry/configmaps/", Revision::ZERO).await?;
//!
//! // An update must name the revision it read; a stale one is a conflict (HTTP 409 in the API server).
//! let updated = store.update(key, Bytes::from_static(b"{\"a\":1}"), Some(created.mod_revision)).await?;
//! let stale = store.update(key, Bytes::from_static(b"{}"), Some(created.mod_revision)).await;
//! assert!(matches!(stale, Err(StoreError::Conflict { .. })));
//!
//! // The watch replays from the requested revision: the creation, then the update.
//! assert!(watch.next().await.unwrap()?.is_create());
//! assert_eq!(watch.next().await.unwrap()?.revision(), updated.mod_revision);
//! # Ok(())
//! # }
//! ```

mod codec;
mod engine;
mod persist;
mod sled_backend;
mod watch;
mod writer;

#[cfg(test)]
mod conformance;

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use bytes::Bytes;

pub use engine::{event_bytes, CommitStats, Engine, MemoryStore, StoreConfig, DEFAULT_HISTORY_BYTES};
pub use persist::Memory;
pub use sled_backend::{Sled, SledStore};

/// A point in the store's history: the value of the global write counter.
///
/// Every successful write increments it by exactly one, so revisions are dense (no write leaves a hole) and
/// totally ordered. It is what Kubernetes calls the `resourceVersion`: the API server prints it as a decimal
/// string and parses it back with [`FromStr`]. Revision 0 means "before the first write".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub u64);

impl Revision {
    /// The revision of an empty store, before any write.
    pub const ZERO: Revision = Revision(0);
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Revision {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Revision)
    }
}

/// One key as stored at some revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key, e.g. `/registry/pods/default/web-0`.
    pub key: String,
    /// The opaque value (for berth: the object's JSON). Cloning is cheap: [`Bytes`] is reference-counted.
    pub value: Bytes,
    /// The revision of the write that created this key (unchanged by later updates).
    pub create_revision: Revision,
    /// The revision of the latest write to this key: the object's `resourceVersion`.
    pub mod_revision: Revision,
}

/// What a write did to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted.
    Delete,
}

/// One committed write, as delivered to watchers and kept in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Whether the key was put or deleted.
    pub kind: EventKind,
    /// For a put: the new value. For a delete: the last value the key had, with `mod_revision` set to the revision
    /// of the delete itself, so that every event carries its own revision (Kubernetes sends the last state of the
    /// object in a `DELETED` watch event, stamped with the deletion's resourceVersion).
    pub kv: KeyValue,
    /// The key's value just before this write; `None` only for a creation.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision at which this write happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }

    /// Whether this event created the key (a Kubernetes `ADDED` event rather than `MODIFIED`).
    pub fn is_create(&self) -> bool {
        self.kind == EventKind::Put && self.kv.create_revision == self.kv.mod_revision
    }
}

/// Why a store operation failed. The variants mirror etcd's errors so the API server can map them one-to-one
/// onto Kubernetes statuses (409 AlreadyExists, 404 NotFound, 409 Conflict, 410 Expired, ...).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` found the key already present.
    #[error("key {key:?} already exists")]
    AlreadyExists {
        /// The key that exists.
        key: String,
    },
    /// `update` or `delete` found no such key.
    #[error("key {key:?} not found")]
    NotFound {
        /// The missing key.
        key: String,
    },
    /// The key was modified since the caller read it.
    #[error("key {key:?} has revision {actual}, not the expected {expected}")]
    Conflict {
        /// The key written.
        key: String,
        /// The `mod_revision` the caller expected.
        expected: Revision,
        /// The key's actual `mod_revision`.
        actual: Revision,
    },
    /// The requested revision is older than the retained history (Kubernetes: 410 "too old resource version:
    /// {requested} ({compacted})").
    #[error("revision {requested} has been compacted (history retained after {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The newest revision whose history was dropped; everything after it is retained.
        compacted: Revision,
    },
    /// The requested revision has not happened yet.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// The store has shut down (or stopped accepting writes after a failed commit).
    #[error("store is closed")]
    Closed,
    /// Reading or writing the backing storage failed.
    #[error("storage i/o failed while {operation}")]
    Io {
        /// What the store was doing, e.g. "committing a batch".
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Data read back from the backing storage did not decode.
    #[error("stored data is corrupt: {detail}")]
    Corrupt {
        /// What was wrong and where.
        detail: String,
    },
}

/// A stream of committed events, in revision order. It ends after yielding an error.
pub type WatchStream = futures::stream::BoxStream<'static, Result<Event, StoreError>>;

/// The storage operations the API server needs, and nothing more.
///
/// Writes are linearizable: each successful write is durable (for persistent backends) and visible to every
/// later read before the call returns. Reads never observe a write that is not yet durable.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current value of `key`, or `None` if it does not exist.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if it exists.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError>;

    /// Replaces the value of an existing `key`. With `expected = Some(rev)` the update only happens if the key's
    /// `mod_revision` is still `rev` ([`StoreError::Conflict`] otherwise); `None` updates unconditionally.
    /// Fails with [`StoreError::NotFound`] if the key does not exist.
    async fn update(&self, key: &str, value: Bytes, expected: Option<Revision>) -> Result<KeyValue, StoreError>;

    /// Deletes `key`, with the same precondition rules as [`Store::update`]. Returns the deleted value with
    /// `mod_revision` set to the revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError>;

    /// All keys starting with `prefix`, sorted by key, as one consistent snapshot, with the revision it reflects.
    ///
    /// `at = None` reads the current state. `Some(rev)` reads the state as of `rev`, rebuilt from the retained
    /// history: [`StoreError::Compacted`] if that history is gone, [`StoreError::FutureRevision`] if `rev` is
    /// newer than the current revision.
    async fn list(&self, prefix: &str, at: Option<Revision>) -> Result<(Vec<KeyValue>, Revision), StoreError>;

    /// Every event for keys starting with `prefix` with revision greater than `after`, in order, then live
    /// events as they commit. Fails with [`StoreError::Compacted`] if events after `after` are no longer
    /// retained, and [`StoreError::FutureRevision`] if `after` is newer than the current revision.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// Drops the history at and before `revision`: later `list(at)` and `watch(after)` calls for those revisions
    /// fail with [`StoreError::Compacted`]. Compacting at or below the already compacted revision does nothing
    /// (etcd reports an error there; nothing useful follows from it here).
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The revision of the latest committed write.
    fn current_revision(&self) -> Revision;

    /// The newest revision whose history has been dropped (0 if none). Watches and lists may ask for any
    /// revision from this one up to [`Store::current_revision`].
    fn compacted_revision(&self) -> Revision;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_round_trips_through_its_decimal_string() {
        let check = |text: &str, expected: Option<u64>| {
            assert_eq!(
                text.parse::<Revision>().ok(),
                expected.map(Revision),
                "parsing {text:?}"
            );
            if let Some(n) = expected {
                assert_eq!(Revision(n).to_string(), text);
            }
        };
        check("0", Some(0));
        check("123", Some(123));
        check("18446744073709551615", Some(u64::MAX));
        check("", None);
        check("-1", None);
        check("12a", None);
    }

    #[test]
    fn a_put_is_a_creation_only_when_create_and_mod_revisions_match() {
        let kv = |create, modified| KeyValue {
            key: "/k".into(),
            value: Bytes::from_static(b"v"),
            create_revision: Revision(create),
            mod_revision: Revision(modified),
        };
        let event = |kind, kv| Event { kind, kv, prev: None };
        assert!(event(EventKind::Put, kv(3, 3)).is_create());
        assert!(!event(EventKind::Put, kv(3, 4)).is_create());
        assert!(!event(EventKind::Delete, kv(3, 3)).is_create());
        assert_eq!(event(EventKind::Put, kv(3, 4)).revision(), Revision(4));
    }
}
