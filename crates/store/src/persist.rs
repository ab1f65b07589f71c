//! The narrow seam between the engine and durable storage: one call that makes a whole batch durable at once.
//!
//! The engine (mirror, history, watches, preconditions) is the same for every backend; a backend only has to
//! persist committed batches and, on open, hand back what it persisted. This file holds that trait and the
//! in-memory backend, which persists nothing. It deliberately does not check preconditions or assign revisions:
//! by the time a batch gets here, the writer has already decided everything.

use crate::{Event, Revision, StoreError};

/// One group-committed batch, handed to [`Persistence::commit`].
pub(crate) struct Commit<'a> {
    /// The batch's events, with consecutive revisions following the previously committed one. May be empty when
    /// the batch only compacts.
    pub events: &'a [Event],
    /// The store's revision after this batch (the last event's revision, or unchanged).
    pub revision: Revision,
    /// The compacted revision after this batch.
    pub compacted: Revision,
    /// The compacted revision before this batch: history in `(previous_compacted, compacted]` is to be dropped.
    pub previous_compacted: Revision,
}

/// Durable storage for committed batches.
///
/// `commit` runs on the store's dedicated writer thread, so it may block. It must be atomic (after a crash,
/// either all of the batch is there or none of it) and must not return `Ok` before the batch is durable: the
/// engine acknowledges writes as soon as it returns.
pub(crate) trait Persistence: Send + 'static {
    /// Makes `commit` durable, atomically.
    fn commit(&mut self, commit: &Commit<'_>) -> Result<(), StoreError>;
}

/// Marker for the in-memory backend: see [`crate::MemoryStore`].
#[derive(Debug)]
pub enum Memory {}

/// Persists nothing: state lives only in the engine's in-memory mirror and is lost when the store is dropped.
pub(crate) struct MemoryBackend;

impl Persistence for MemoryBackend {
    fn commit(&mut self, _commit: &Commit<'_>) -> Result<(), StoreError> {
        Ok(())
    }
}
