//! The single writer: group commit of queued write requests, one durable flush per batch.
//!
//! Every write goes through one dedicated thread, which makes revision assignment and precondition checks trivially
//! serial. Throughput comes from batching, not parallelism: the writer takes the first queued request, drains
//! whatever else is already waiting (up to `max_batch`), checks each request against the committed state plus the
//! batch's own earlier changes, gives the survivors consecutive revisions, and persists the whole batch in one
//! atomic, durable step. Only then does it publish the batch to readers (mirror, history, live watchers) and answer
//! the callers. So a caller is answered `Ok` only once its write is on disk, readers never see an undurable write,
//! and a failed precondition consumes no revision. Under load the batches grow by themselves: while one flush is
//! in progress the next batch queues up.
//!
//! This file deliberately does not serve reads or watches, and knows nothing about how a backend stores a batch.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::engine::{Shared, State, StoreConfig};
use crate::persist::{Commit, Persistence};
use crate::{Event, EventKind, KeyValue, Revision, StoreError};

/// A write as requested by a caller, before the writer has judged it.
pub(crate) enum WriteOp {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Option<Revision>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

impl WriteOp {
    fn key(&self) -> &str {
        match self {
            WriteOp::Create { key, .. } | WriteOp::Update { key, .. } | WriteOp::Delete { key, .. } => key,
        }
    }
}

/// One queued request with the channel its answer goes back on.
pub(crate) enum Request {
    Write {
        op: WriteOp,
        reply: oneshot::Sender<Result<KeyValue, StoreError>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// The writer thread's state.
pub(crate) struct Writer<P> {
    persistence: P,
    shared: Arc<Shared>,
    queue: mpsc::Receiver<Request>,
    events: broadcast::Sender<Arc<[Event]>>,
    max_batch: usize,
    history_limit: u64,
    history_bytes: u64,
    /// Set once a commit has failed. After that we no longer know what is on disk (a failed flush may or may not
    /// have persisted the batch), so accepting more writes could acknowledge revisions that clash with persisted
    /// ones; every later write is refused instead, as databases do after a failed fsync.
    failure: Option<String>,
}

impl<P: Persistence> Writer<P> {
    pub(crate) fn new(
        persistence: P,
        shared: Arc<Shared>,
        queue: mpsc::Receiver<Request>,
        events: broadcast::Sender<Arc<[Event]>>,
        config: &StoreConfig,
    ) -> Self {
        Writer {
            persistence,
            shared,
            queue,
            events,
            max_batch: config.max_batch.max(1),
            history_limit: config.history_limit,
            history_bytes: config.history_bytes,
            failure: None,
        }
    }

    /// Commits batches until every store handle is gone and the queue is drained.
    pub(crate) fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(first) = self.queue.blocking_recv() {
            batch.push(first);
            while batch.len() < self.max_batch {
                match self.queue.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch.drain(..));
        }
    }

    fn commit_batch(&mut self, batch: impl Iterator<Item = Request>) {
        if let Some(reason) = &self.failure {
            for request in batch {
                refuse(request, reason);
            }
            return;
        }
        let staged = stage(&self.shared.read(), batch, self.history_limit, self.history_bytes);
        let events: Arc<[Event]> = staged.events.into();
        if !events.is_empty() || staged.compacted != staged.previous_compacted {
            let commit = Commit {
                events: &events,
                revision: staged.revision,
                compacted: staged.compacted,
                previous_compacted: staged.previous_compacted,
            };
            if let Err(err) = self.persistence.commit(&commit) {
                tracing::error!(error = %err, "store commit failed; refusing all further writes");
                let reason = error_chain(&err);
                for answer in staged.answers {
                    answer.fail(&reason);
                }
                self.failure = Some(reason);
                return;
            }
            self.publish(&events, staged.revision, staged.compacted);
        }
        for answer in staged.answers {
            answer.send(&events);
        }
    }

    /// Makes a durable batch visible: mirror and history under one short write lock, then the live feed.
    fn publish(&self, events: &Arc<[Event]>, revision: Revision, compacted: Revision) {
        {
            let mut state = self.shared.write();
            for event in events.iter() {
                match event.kind {
                    EventKind::Put => state.kv.insert(event.kv.key.clone(), event.kv.clone()),
                    EventKind::Delete => state.kv.remove(&event.kv.key),
                };
            }
            state.push_history(events.iter().cloned());
            state.compact_history(compacted);
            state.revision = revision;
        }
        if !events.is_empty() {
            self.shared.batches.fetch_add(1, Ordering::Relaxed);
            self.shared.writes.fetch_add(events.len() as u64, Ordering::Relaxed);
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(events.clone());
        }
    }
}

/// A batch after judging: the events to commit and what to answer each caller.
struct Staged {
    events: Vec<Event>,
    answers: Vec<Answer>,
    revision: Revision,
    compacted: Revision,
    previous_compacted: Revision,
}

/// The answer owed to one caller once the batch's fate is known.
enum Answer {
    /// `Ok(i)`: the write became `events[i]`.
    Write {
        reply: oneshot::Sender<Result<KeyValue, StoreError>>,
        outcome: Result<usize, StoreError>,
    },
    Compact {
        reply: oneshot::Sender<Result<(), StoreError>>,
        outcome: Result<(), StoreError>,
    },
}

impl Answer {
    /// Answers after a successful commit. A caller that stopped waiting (dropped its future) is ignored: its write
    /// still happened, as with any database whose client disconnects after sending a commit.
    fn send(self, events: &[Event]) {
        match self {
            Answer::Write { reply, outcome } => {
                let _ = reply.send(outcome.map(|index| events[index].kv.clone()));
            }
            Answer::Compact { reply, outcome } => {
                let _ = reply.send(outcome);
            }
        }
    }

    /// Answers after a failed commit: requests that would have succeeded get the commit's error; those that
    /// failed their own checks keep their more precise error.
    fn fail(self, reason: &str) {
        let error = || commit_failed("committing a batch", reason);
        match self {
            Answer::Write { reply, outcome } => {
                let _ = reply.send(outcome.and(Err(error())));
            }
            Answer::Compact { reply, outcome } => {
                let _ = reply.send(outcome.and(Err(error())));
            }
        }
    }
}

/// The error and all its sources on one line: the reason is kept as text, since each later caller needs a copy.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn commit_failed(operation: &'static str, reason: &str) -> StoreError {
    StoreError::Io {
        operation,
        source: std::io::Error::other(reason.to_string()),
    }
}

fn refuse(request: Request, reason: &str) {
    let error = commit_failed("writing after an earlier commit failed", reason);
    match request {
        Request::Write { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Request::Compact { reply, .. } => {
            let _ = reply.send(Err(error));
        }
    }
}

/// Judges a batch in order against the committed `state` plus the batch's own earlier writes, assigning
/// consecutive revisions to the writes that pass.
fn stage(state: &State, batch: impl Iterator<Item = Request>, history_limit: u64, history_bytes: u64) -> Staged {
    // What this batch has written so far: `None` marks a key it deleted.
    let mut overlay: HashMap<String, Option<KeyValue>> = HashMap::new();
    let mut events = Vec::new();
    let mut answers = Vec::new();
    let mut revision = state.revision;
    let mut compacted = state.compacted;
    for request in batch {
        match request {
            Request::Write { op, reply } => {
                let current = match overlay.get(op.key()) {
                    Some(staged) => staged.clone(),
                    None => state.kv.get(op.key()).cloned(),
                };
                let next = Revision(revision.0 + 1);
                let outcome = judge(op, current, next).map(|event| {
                    revision = next;
                    let after = (event.kind == EventKind::Put).then(|| event.kv.clone());
                    overlay.insert(event.kv.key.clone(), after);
                    events.push(event);
                    events.len() - 1
                });
                answers.push(Answer::Write { reply, outcome });
            }
            Request::Compact {
                revision: target,
                reply,
            } => {
                let outcome = if target > revision {
                    Err(StoreError::FutureRevision {
                        requested: target,
                        current: revision,
                    })
                } else {
                    compacted = compacted.max(target);
                    Ok(())
                };
                answers.push(Answer::Compact { reply, outcome });
            }
        }
    }
    // Retention: keep at most `history_limit` events, compacting the oldest automatically.
    if revision.0 - compacted.0 > history_limit {
        compacted = Revision(revision.0 - history_limit);
    }
    compacted = compacted.max(oldest_kept_by_bytes(state, &events, compacted, history_bytes));
    Staged {
        events,
        answers,
        revision,
        compacted,
        previous_compacted: state.compacted,
    }
}

/// The compacted revision that keeps the history after this batch (the retained `state.history` then `events`,
/// from `compacted` on) within `limit` bytes: the oldest events go first, as many as it takes. A single event
/// bigger than the limit leaves no history at all, which is still correct: watches and lists from the current
/// revision on work, older ones get `Compacted` and start over.
fn oldest_kept_by_bytes(state: &State, events: &[Event], compacted: Revision, limit: u64) -> Revision {
    let added: u64 = events.iter().map(crate::engine::event_bytes).sum();
    let mut bytes = state.history_bytes + added;
    if bytes <= limit {
        return compacted;
    }
    let mut keep_after = compacted;
    for event in state.history.iter().chain(events) {
        if bytes <= limit && event.revision() > compacted {
            break;
        }
        bytes -= crate::engine::event_bytes(event);
        keep_after = keep_after.max(event.revision());
    }
    keep_after
}

/// Checks one write's preconditions against the key's `current` value and builds its event at `revision`.
fn judge(op: WriteOp, current: Option<KeyValue>, revision: Revision) -> Result<Event, StoreError> {
    let check_expected = |key: &str, current: &KeyValue, expected: Option<Revision>| match expected {
        Some(expected) if expected != current.mod_revision => Err(StoreError::Conflict {
            key: key.to_string(),
            expected,
            actual: current.mod_revision,
        }),
        _ => Ok(()),
    };
    match (op, current) {
        (WriteOp::Create { key, .. }, Some(_)) => Err(StoreError::AlreadyExists { key }),
        (WriteOp::Create { key, value }, None) => Ok(Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key,
                value,
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        }),
        (WriteOp::Update { key, .. } | WriteOp::Delete { key, .. }, None) => Err(StoreError::NotFound { key }),
        (WriteOp::Update { key, value, expected }, Some(current)) => {
            check_expected(&key, &current, expected)?;
            let kv = KeyValue {
                key,
                value,
                create_revision: current.create_revision,
                mod_revision: revision,
            };
            Ok(Event {
                kind: EventKind::Put,
                kv,
                prev: Some(current),
            })
        }
        (WriteOp::Delete { key, expected }, Some(current)) => {
            check_expected(&key, &current, expected)?;
            let kv = KeyValue {
                mod_revision: revision,
                ..current.clone()
            };
            Ok(Event {
                kind: EventKind::Delete,
                kv,
                prev: Some(current),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;

    use super::*;
    use crate::engine::Engine;
    use crate::persist::Memory;
    use crate::Store;

    /// A backend that reports each commit as it starts and holds it until the test releases it, with a chosen
    /// outcome: it makes "not yet durable" an observable, controllable state.
    struct Gated {
        entered: tokio::sync::mpsc::UnboundedSender<usize>,
        release: std_mpsc::Receiver<Result<(), String>>,
    }

    impl Persistence for Gated {
        fn commit(&mut self, commit: &Commit<'_>) -> Result<(), StoreError> {
            let _ = self.entered.send(commit.events.len());
            match self.release.recv() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(reason)) => Err(StoreError::Io {
                    operation: "test commit",
                    source: std::io::Error::other(reason),
                }),
                Err(_) => Err(StoreError::Closed),
            }
        }
    }

    fn gated() -> (
        Engine<Memory>,
        tokio::sync::mpsc::UnboundedReceiver<usize>,
        std_mpsc::Sender<Result<(), String>>,
    ) {
        let (entered, entered_rx) = tokio::sync::mpsc::unbounded_channel();
        let (release_tx, release) = std_mpsc::channel();
        let store = Engine::start(Gated { entered, release }, State::default(), StoreConfig::default()).unwrap();
        (store, entered_rx, release_tx)
    }

    fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[tokio::test]
    async fn reads_never_see_a_write_before_it_is_durable() {
        let (store, mut entered, release) = gated();
        let store = Arc::new(store);
        let writer = tokio::spawn({
            let store = store.clone();
            async move { store.create("/a", b("1")).await }
        });
        assert_eq!(entered.recv().await, Some(1));
        // The batch is with the backend but not durable yet: nobody may see it.
        assert_eq!(store.get("/a").await.unwrap(), None);
        assert_eq!(store.current_revision(), Revision(0));
        assert!(store.list("/", None).await.unwrap().0.is_empty());
        release.send(Ok(())).unwrap();
        assert_eq!(writer.await.unwrap().unwrap().mod_revision, Revision(1));
        assert_eq!(store.get("/a").await.unwrap().map(|kv| kv.value), Some(b("1")));
    }

    #[tokio::test]
    async fn requests_queued_during_a_commit_form_one_batch_that_sees_its_own_writes() {
        let (store, mut entered, release) = gated();
        let store = Arc::new(store);
        let first = tokio::spawn({
            let store = store.clone();
            async move { store.create("/a", b("1")).await }
        });
        assert_eq!(entered.recv().await, Some(1));
        // While the first commit is held, queue a script whose later steps depend on earlier ones (join! polls in
        // order, so the requests are queued in order). They must all land in the next batch.
        let script = async {
            futures::join!(
                store.create("/b", b("1")),                    // revision 2
                store.update("/b", b("2"), Some(Revision(2))), // sees the staged create: revision 3
                store.create("/b", b("again")),                // sees it too: already exists
                store.delete("/b", Some(Revision(3))),         // revision 4
                store.update("/a", b("2"), Some(Revision(1))), // the committed /a: revision 5
            )
        };
        let releaser = async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            release.send(Ok(())).unwrap();
            let second = entered.recv().await;
            release.send(Ok(())).unwrap();
            second
        };
        let ((created, updated, recreated, deleted, other), second_batch) = tokio::join!(script, releaser);
        assert_eq!(second_batch, Some(4), "four successful writes in one batch");
        assert_eq!(created.unwrap().mod_revision, Revision(2));
        assert_eq!(updated.unwrap().mod_revision, Revision(3));
        assert!(matches!(recreated, Err(StoreError::AlreadyExists { .. })));
        assert_eq!(deleted.unwrap().mod_revision, Revision(4));
        assert_eq!(other.unwrap().mod_revision, Revision(5));
        first.await.unwrap().unwrap();
        assert_eq!(store.current_revision(), Revision(5));
        assert_eq!(store.commit_stats(), crate::CommitStats { batches: 2, writes: 5 });
    }

    #[tokio::test]
    async fn a_failed_commit_fails_its_writes_and_refuses_all_later_ones() {
        let (store, mut entered, release) = gated();
        let store = Arc::new(store);
        let writer = tokio::spawn({
            let store = store.clone();
            async move { store.create("/a", b("1")).await }
        });
        assert_eq!(entered.recv().await, Some(1));
        release.send(Err("disk on fire".into())).unwrap();
        let err = writer.await.unwrap().unwrap_err();
        assert!(
            matches!(&err, StoreError::Io { source, .. } if source.to_string().ends_with("disk on fire")),
            "{err:?}"
        );
        assert_eq!(store.get("/a").await.unwrap(), None);
        assert_eq!(store.current_revision(), Revision(0));
        // What reached the disk is now unknown, so no further write may be acknowledged, nor even attempted.
        let err = store.create("/b", b("1")).await.unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
        assert!(entered.try_recv().is_err(), "the backend saw no further commit");
    }
}
