//! The engine shared by every backend: the in-memory mirror that serves reads, the history that rebuilds old
//! snapshots and resumes watches, and the [`Store`] implementation that routes writes to the writer thread.
//!
//! Reads are served entirely from memory under a short read lock; they never touch the backend. Writes are not
//! applied here: they are queued to the single writer thread (see `writer`), which group-commits them and only then
//! publishes them to the mirror. This file deliberately contains no persistence code and no precondition logic.

use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::persist::{Memory, MemoryBackend, Persistence};
use crate::writer::{Request, WriteOp, Writer};
use crate::{watch, Event, KeyValue, Revision, Store, StoreError, WatchStream};

/// Tuning knobs of a store. The defaults suit the API server; tests shrink them to exercise the edges.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// How many recent events to retain for `list(at)` and resuming watches. Older history is compacted
    /// automatically, so this bounds memory (and, for sled, the on-disk log).
    pub history_limit: u64,
    /// The most bytes the retained history may hold, as counted by [`event_bytes`]: the oldest events are
    /// compacted as soon as the history passes it, and no more than this is loaded when a store opens. A count
    /// alone does not bound memory: 100,000 events of a 1 MiB object are 200 GB.
    pub history_bytes: u64,
    /// The most memory sled's page cache may use (sled's own default is 1 GiB). Reads are served from the
    /// engine's mirror, so the cache only speeds up sled's own bookkeeping; a small one keeps the server's
    /// memory to what it serves.
    pub cache_bytes: u64,
    /// How many committed batches a watcher may fall behind before it has to catch up from the history instead
    /// of the live feed. Catching up loses nothing unless the history has moved past the watcher as well.
    pub watch_buffer: usize,
    /// The most write requests committed together in one batch (one durable flush).
    pub max_batch: usize,
    /// How many write requests may wait for the writer before callers are made to wait for room.
    pub queue_depth: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            history_limit: 100_000,
            history_bytes: DEFAULT_HISTORY_BYTES,
            cache_bytes: 32 * 1024 * 1024,
            watch_buffer: 1024,
            max_batch: 1024,
            queue_depth: 8192,
        }
    }
}

/// The default of [`StoreConfig::history_bytes`]: 64 MiB, an eighth of a 512 MB board. The history exists so that
/// a watch that reconnects, or a list at an older revision, does not have to start over; upstream's apiserver
/// keeps about five minutes of it (etcd compaction every 5 minutes). 64 MiB holds about 16,000 updates of a 2 KiB
/// object (each counts its old and new value), hours of a small cluster's changes, while 400 updates of a 1 MB
/// ConfigMap, which cost 1.2 GB before, now cost at most 64 MiB of history.
pub const DEFAULT_HISTORY_BYTES: u64 = 64 * 1024 * 1024;

/// What one event of the history costs against [`StoreConfig::history_bytes`]: its key and value, its previous
/// value, and a fixed allowance for the bookkeeping around them. The value and the previous value often share one
/// reference-counted buffer with a neighbouring event or the mirror, so this is an upper bound on what the event
/// keeps alive, which is the side a memory bound must err on.
pub fn event_bytes(event: &Event) -> u64 {
    const OVERHEAD: usize = 160;
    let kv = event.kv.key.len() + event.kv.value.len();
    let prev = event.prev.as_ref().map_or(0, |p| p.key.len() + p.value.len());
    (OVERHEAD + kv + prev) as u64
}

/// Counters describing group commit, for benchmarks and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Batches committed (each one durable flush).
    pub batches: u64,
    /// Successful writes committed across those batches.
    pub writes: u64,
}

/// The store: one engine, parameterised only by a marker naming its backend ([`Memory`] or [`crate::Sled`]).
///
/// Dropping it closes the write queue, lets the writer thread finish what was already queued, and waits for it
/// to exit, so that a sled database is closed (and its file lock released) once the drop returns. Open watch
/// streams then end with [`StoreError::Closed`].
pub struct Engine<B> {
    shared: Arc<Shared>,
    /// `None` only while dropping: taking it closes the queue, which is what stops the writer.
    requests: Option<mpsc::Sender<Request>>,
    /// Kept so that watches can subscribe; the writer holds the other sender.
    events: broadcast::Sender<Arc<[Event]>>,
    writer: Option<JoinHandle<()>>,
    _backend: PhantomData<fn() -> B>,
}

/// A store that keeps everything in memory: for tests and throwaway clusters.
pub type MemoryStore = Engine<Memory>;

impl MemoryStore {
    /// An empty in-memory store with the default configuration.
    ///
    /// # Panics
    /// If the operating system cannot start the writer thread (as [`std::thread::spawn`] does).
    pub fn new() -> Self {
        Self::with_config(StoreConfig::default())
    }

    /// An empty in-memory store with the given configuration.
    ///
    /// # Panics
    /// If the operating system cannot start the writer thread (as [`std::thread::spawn`] does).
    pub fn with_config(config: StoreConfig) -> Self {
        match Engine::start(MemoryBackend, State::default(), config) {
            Ok(store) => store,
            // Failing to start a thread means the process is out of resources; there is nothing to return to.
            Err(err) => panic!("cannot start the store writer thread: {err}"),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> Engine<B> {
    /// Starts the writer thread over `persistence`, whose already-persisted contents are `state`.
    pub(crate) fn start<P: Persistence>(persistence: P, state: State, config: StoreConfig) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            batches: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        });
        let (requests, queue) = mpsc::channel(config.queue_depth.max(1));
        let (events, _) = broadcast::channel(config.watch_buffer.max(1));
        let writer = Writer::new(persistence, shared.clone(), queue, events.clone(), &config);
        let handle = std::thread::Builder::new()
            .name("berth-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|source| StoreError::Io {
                operation: "starting the writer thread",
                source,
            })?;
        Ok(Engine {
            shared,
            requests: Some(requests),
            events,
            writer: Some(handle),
            _backend: PhantomData,
        })
    }

    /// How many batches and writes the writer has committed so far: `writes / batches` is the mean batch size.
    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            batches: self.shared.batches.load(Ordering::Relaxed),
            writes: self.shared.writes.load(Ordering::Relaxed),
        }
    }

    async fn write(&self, op: WriteOp) -> Result<KeyValue, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Write { op, reply }).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn send(&self, request: Request) -> Result<(), StoreError> {
        let requests = self.requests.as_ref().ok_or(StoreError::Closed)?;
        requests.send(request).await.map_err(|_| StoreError::Closed)
    }
}

impl<B> Drop for Engine<B> {
    fn drop(&mut self) {
        // Closing the queue is the writer's stop signal; it drains what is queued first, so no accepted request is
        // left unanswered. Joining blocks for at most that drain (a flush or so) and guarantees the backend is
        // closed when the drop returns, so the same database can be reopened straight away.
        drop(self.requests.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("store writer thread panicked");
            }
        }
    }
}

#[async_trait]
impl<B: 'static> Store for Engine<B> {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.shared.read().kv.get(key).cloned())
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        self.write(WriteOp::Create {
            key: key.to_string(),
            value,
        })
        .await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.write(WriteOp::Update {
            key: key.to_string(),
            value,
            expected,
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.write(WriteOp::Delete {
            key: key.to_string(),
            expected,
        })
        .await
    }

    async fn list(&self, prefix: &str, at: Option<Revision>) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        self.shared.read().list(prefix, at)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        // Subscribe before reading the history: anything committed after this point arrives on the live feed, and
        // anything committed before it is already in the history we are about to read. The overlap is skipped by
        // revision, so the stream has neither gaps nor duplicates.
        let live = self.events.subscribe();
        let (backlog, cursor) = {
            let state = self.shared.read();
            (state.events_after(prefix, after)?, state.revision)
        };
        Ok(watch::stream(
            self.shared.clone(),
            live,
            prefix.to_string(),
            backlog,
            cursor,
        ))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Compact { revision, reply }).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn current_revision(&self) -> Revision {
        self.shared.read().revision
    }

    fn compacted_revision(&self) -> Revision {
        self.shared.read().compacted
    }
}

/// What the engine shares between the store handle, the writer thread and watch streams.
pub(crate) struct Shared {
    state: RwLock<State>,
    pub(crate) batches: AtomicU64,
    pub(crate) writes: AtomicU64,
}

impl Shared {
    /// Locks the state for reading. A poisoned lock means a reader panicked mid-read; readers never modify the
    /// state, and the writer applies a batch without panicking paths, so the data is still consistent.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks the state for writing; only the writer thread does this.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The committed state: what readers see.
///
/// Invariant: `history` holds exactly the events with revisions `compacted + 1 ..= revision`, in order,
/// `history_bytes` is the sum of their [`event_bytes`], and `kv` is the result of applying all writes up to
/// `revision`.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) kv: BTreeMap<String, KeyValue>,
    pub(crate) history: VecDeque<Event>,
    pub(crate) history_bytes: u64,
    pub(crate) revision: Revision,
    pub(crate) compacted: Revision,
}

impl State {
    /// Appends committed events to the history.
    pub(crate) fn push_history(&mut self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            self.history_bytes += event_bytes(&event);
            self.history.push_back(event);
        }
    }

    /// Drops the history at and before `compacted` and records it as compacted.
    pub(crate) fn compact_history(&mut self, compacted: Revision) {
        while self.history.front().is_some_and(|event| event.revision() <= compacted) {
            if let Some(event) = self.history.pop_front() {
                self.history_bytes -= event_bytes(&event);
            }
        }
        self.compacted = self.compacted.max(compacted);
    }

    /// The keys under `prefix` as of `at` (default: now), sorted by key.
    pub(crate) fn list(&self, prefix: &str, at: Option<Revision>) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let at = at.unwrap_or(self.revision);
        if at > self.revision {
            return Err(StoreError::FutureRevision {
                requested: at,
                current: self.revision,
            });
        }
        let current = self
            .kv
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix));
        if at == self.revision {
            return Ok((current.map(|(_, kv)| kv.clone()).collect(), at));
        }
        if at < self.compacted {
            return Err(StoreError::Compacted {
                requested: at,
                compacted: self.compacted,
            });
        }
        // Rebuild the past by undoing the newer events, newest first: each event's `prev` is exactly what its key
        // held before it (absent for a creation). Borrow until the end so only the result is cloned.
        let mut snapshot: BTreeMap<&str, &KeyValue> = current.map(|(key, kv)| (key.as_str(), kv)).collect();
        for event in self.history.iter().rev().take_while(|event| event.revision() > at) {
            if !event.kv.key.starts_with(prefix) {
                continue;
            }
            match &event.prev {
                Some(prev) => snapshot.insert(prev.key.as_str(), prev),
                None => snapshot.remove(event.kv.key.as_str()),
            };
        }
        Ok((snapshot.into_values().cloned().collect(), at))
    }

    /// The retained events after `after` for keys under `prefix`, for starting or catching up a watch.
    pub(crate) fn events_after(&self, prefix: &str, after: Revision) -> Result<Vec<Event>, StoreError> {
        if after > self.revision {
            return Err(StoreError::FutureRevision {
                requested: after,
                current: self.revision,
            });
        }
        if after < self.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: self.compacted,
            });
        }
        let start = self.history.partition_point(|event| event.revision() <= after);
        Ok(self
            .history
            .range(start..)
            .filter(|event| event.kv.key.starts_with(prefix))
            .cloned()
            .collect())
    }
}
