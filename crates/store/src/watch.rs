//! Watch streams: the retained backlog first, then live events, with no gaps and no duplicates.
//!
//! A stream starts from a backlog read out of the history right after subscribing to the live feed (see
//! `Engine::watch`), and remembers the highest revision it has accounted for (its *cursor*). Live batches at or
//! below the cursor are skipped, which removes the overlap between backlog and feed. If the watcher falls so far
//! behind that the live feed drops batches (`Lagged`), the stream refills from the history instead of losing them;
//! only if the history has been compacted past the cursor too does it end, with [`StoreError::Compacted`] (the
//! Kubernetes API server turns that into a 410 "too old resource version" so the client relists).
//!
//! This file deliberately does not filter by anything but key prefix: label and field selectors are the API
//! server's business.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::broadcast;

use crate::engine::Shared;
use crate::{Event, Revision, StoreError, WatchStream};

/// Builds the stream for a watch on `prefix` that has read `backlog` and is current up to `cursor`.
pub(crate) fn stream(
    shared: Arc<Shared>,
    live: broadcast::Receiver<Arc<[Event]>>,
    prefix: String,
    backlog: Vec<Event>,
    cursor: Revision,
) -> WatchStream {
    let watcher = Watcher {
        shared,
        live,
        prefix,
        pending: backlog.into(),
        cursor,
        finished: false,
    };
    futures::stream::unfold(watcher, Watcher::next).boxed()
}

struct Watcher {
    shared: Arc<Shared>,
    live: broadcast::Receiver<Arc<[Event]>>,
    prefix: String,
    /// Events accounted for but not yet yielded.
    pending: VecDeque<Event>,
    /// Every event up to this revision is either yielded, pending, or outside the prefix.
    cursor: Revision,
    /// Set after yielding the final error.
    finished: bool,
}

impl Watcher {
    async fn next(mut self) -> Option<(Result<Event, StoreError>, Watcher)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.finished {
                return None;
            }
            match self.live.recv().await {
                Ok(batch) => self.take(&batch),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Err(err) = self.catch_up() {
                        self.finished = true;
                        return Some((Err(err), self));
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.finished = true;
                    return Some((Err(StoreError::Closed), self));
                }
            }
        }
    }

    /// Queues a live batch's new events under our prefix.
    fn take(&mut self, batch: &[Event]) {
        for event in batch {
            if event.revision() <= self.cursor {
                continue;
            }
            self.cursor = event.revision();
            if event.kv.key.starts_with(&self.prefix) {
                self.pending.push_back(event.clone());
            }
        }
    }

    /// Refills from the history after the live feed dropped batches we had not received.
    fn catch_up(&mut self) -> Result<(), StoreError> {
        let state = self.shared.read();
        self.pending.extend(state.events_after(&self.prefix, self.cursor)?);
        self.cursor = state.revision;
        Ok(())
    }
}
