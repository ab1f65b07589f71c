//! Connection tracking for one listener: how many connections are open, which of them have a request in flight,
//! and how long the others have been idle. It enforces the connection cap by choosing a victim (the idlest
//! connection) when a new one arrives at the cap, and it tells each connection when it has been idle too long.
//!
//! It does not close anything itself: a connection's own task watches [`Conn::expired`] and drops or shuts down
//! its connection. Nor does it know HTTP: "a request in flight" is whatever holds a [`RequestGuard`].
//!
//! # Who is the victim
//! Only a connection with no request in flight can be one; an upgraded connection (an exec session) keeps its
//! request in flight for as long as it lives, so it is never one. Among the others, connections that never
//! started a request (still in the TLS handshake, or silent after it) go first, oldest first; then the
//! connections idle longest. A flood of silent connections therefore evicts itself, and a client that just
//! connected (the newest) is the last to go.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// `Conn::in_flight` once the connection was chosen as a victim: no request can start on it any more.
const EVICTED: u32 = u32::MAX;

type Held = Box<dyn std::any::Any + Send>;

/// The open connections of one listener.
pub(crate) struct Tracker {
    /// Times are kept as milliseconds since this instant, so they fit in an atomic.
    epoch: Instant,
    /// At most this many connections are open at once.
    max: usize,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

/// The shared state of one open connection.
pub(crate) struct Conn {
    id: u64,
    epoch: Instant,
    /// Requests in flight, or [`EVICTED`].
    in_flight: AtomicU32,
    /// Whether a request ever started on this connection.
    served: AtomicBool,
    /// When the connection last became idle (accepted, handshake done, last request ended), in ms since `epoch`.
    idle_since: AtomicU64,
    /// Woken when the connection becomes idle or is evicted.
    changed: Notify,
    /// Values kept alive until the connection closes (see [`Conn::hold_until_closed`]); `None` once closed.
    held: Mutex<Option<Vec<Held>>>,
}

/// A connection's place in its [`Tracker`]; dropping it (with the socket it travels with) frees the place.
pub(crate) struct Slot {
    conn: Arc<Conn>,
    tracker: Arc<Tracker>,
}

/// What [`Tracker::admit`] did to make room.
pub(crate) enum Admitted {
    /// There was room, or the idlest connection was evicted to make some.
    Yes(Slot),
    /// Every connection has a request in flight: the new one is refused.
    Full,
}

/// Why a connection should close.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// It never started a request within the header-read timeout: drop it.
    Silent,
    /// It was idle longer than its timeout after serving requests: close it gracefully (HTTP/2 sends GOAWAY).
    Idle,
    /// It was evicted to make room for another: drop it now.
    Evicted,
}

/// Marks one request in flight on a connection until dropped.
pub(crate) struct RequestGuard {
    conn: Arc<Conn>,
    /// Whether this guard counts in `in_flight` (not if the request started on an evicted connection).
    counted: bool,
}

impl Tracker {
    /// A tracker allowing `max` open connections (at least one).
    pub(crate) fn new(max: usize) -> Arc<Tracker> {
        Arc::new(Tracker {
            epoch: Instant::now(),
            max: max.max(1),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// How many connections are open.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Makes room for a new connection, evicting the idlest one at the cap.
    pub(crate) fn admit(self: &Arc<Self>) -> Admitted {
        let mut open = self.lock();
        if open.len() >= self.max && !evict_idlest(&open) {
            return Admitted::Full;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            epoch: self.epoch,
            in_flight: AtomicU32::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(millis_since(self.epoch)),
            changed: Notify::new(),
            held: Mutex::new(Some(Vec::new())),
        });
        open.insert(id, conn.clone());
        Admitted::Yes(Slot {
            conn,
            tracker: self.clone(),
        })
    }

    /// Evicts the idlest connection, if any is idle; used when the process runs out of file descriptors.
    pub(crate) fn evict_idlest(&self) -> bool {
        evict_idlest(&self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        // The map stays consistent whatever panicked while holding it: every change is a single insert or remove.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Chooses and evicts a victim (see the module documentation); false if every connection is busy.
fn evict_idlest(open: &HashMap<u64, Arc<Conn>>) -> bool {
    loop {
        let victim = open
            .values()
            .filter(|c| c.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|c| {
                (
                    c.served.load(Ordering::Relaxed),
                    c.idle_since.load(Ordering::Relaxed),
                    c.id,
                )
            });
        let Some(victim) = victim else { return false };
        // A request may have started since the scan; then that connection is busy after all: look again.
        if victim
            .in_flight
            .compare_exchange(0, EVICTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            victim.changed.notify_one();
            return true;
        }
    }
}

impl Slot {
    /// The connection this slot holds.
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.tracker.lock().remove(&self.conn.id);
        // Dropped here rather than with the last `Arc<Conn>`, so a held value may refer to the connection.
        let held = self.conn.held.lock().unwrap_or_else(PoisonError::into_inner).take();
        drop(held);
    }
}

impl Conn {
    /// Restarts the idle clock: the TLS handshake just completed, and the first request's headers are due
    /// within the header-read timeout from now.
    pub(crate) fn touch(&self) {
        self.idle_since.store(millis_since(self.epoch), Ordering::Relaxed);
    }

    /// Marks a request in flight until the guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> RequestGuard {
        let counted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n != EVICTED).then(|| n + 1))
            .is_ok();
        self.served.store(true, Ordering::Relaxed);
        RequestGuard {
            conn: self.clone(),
            counted,
        }
    }

    /// Keeps `value` alive until the connection's socket closes: how a server ties a permit to an upgraded
    /// connection (an exec session), which outlives its request.
    pub(crate) fn hold_until_closed(&self, value: Held) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_mut() {
            Some(held) => held.push(value),
            // Already closed: nothing to wait for. Dropped outside the lock.
            None => {
                drop(held);
                drop(value);
            }
        }
    }

    /// Completes once the connection has been evicted.
    pub(crate) async fn evicted(&self) {
        loop {
            let changed = self.changed.notified();
            if self.in_flight.load(Ordering::Acquire) == EVICTED {
                return;
            }
            changed.await;
        }
    }

    /// Completes when the connection should close: evicted, or idle (no request in flight) for longer than
    /// `first_request` before its first request or `idle` after a later one. A connection with a request in
    /// flight never expires, however long the request runs.
    pub(crate) async fn expired(&self, first_request: Duration, idle: Duration) -> Expiry {
        loop {
            // Registered before the state is read, so a change between the read and the wait is not missed
            // (`notify_one` also leaves a permit when nobody waits).
            let changed = self.changed.notified();
            match self.in_flight.load(Ordering::Acquire) {
                EVICTED => return Expiry::Evicted,
                0 => {
                    let served = self.served.load(Ordering::Relaxed);
                    let timeout = if served { idle } else { first_request };
                    let since = Duration::from_millis(self.idle_since.load(Ordering::Relaxed));
                    let deadline = self.epoch + since + timeout;
                    if Instant::now() >= deadline {
                        return if served { Expiry::Idle } else { Expiry::Silent };
                    }
                    // On waking, whether by the deadline or a change, look at the state again.
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(deadline) => {}
                    }
                }
                _ => changed.await,
            }
        }
    }
}

impl RequestGuard {
    /// The request's connection was handed over (HTTP 101): it stays busy for as long as it is open, so it is
    /// never evicted or timed out as idle.
    pub(crate) fn keep_busy(mut self) {
        self.counted = false;
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        self.conn
            .idle_since
            .store(millis_since(self.conn.epoch), Ordering::Relaxed);
        let before = self
            .conn
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n != EVICTED && n > 0).then(|| n - 1)
            });
        if before == Ok(1) {
            self.conn.changed.notify_one();
        }
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(tracker: &Arc<Tracker>) -> Slot {
        match tracker.admit() {
            Admitted::Yes(slot) => slot,
            Admitted::Full => panic!("refused"),
        }
    }

    fn is_evicted(slot: &Slot) -> bool {
        slot.conn.in_flight.load(Ordering::Acquire) == EVICTED
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_a_never_served_connection_goes_before_an_idle_served_one() {
        let tracker = Tracker::new(2);
        let served = admit(&tracker);
        drop(served.conn.begin());
        tokio::time::advance(Duration::from_secs(5)).await;
        let silent = admit(&tracker);
        let _new = admit(&tracker);
        assert!(is_evicted(&silent), "the silent connection is evicted");
        assert!(!is_evicted(&served), "the served one stays");
    }

    #[tokio::test(start_paused = true)]
    async fn the_longest_idle_goes_first_and_a_busy_one_never() {
        let tracker = Tracker::new(3);
        let busy = admit(&tracker);
        let _request = busy.conn.begin();
        let old = admit(&tracker);
        drop(old.conn.begin());
        tokio::time::advance(Duration::from_secs(5)).await;
        let recent = admit(&tracker);
        drop(recent.conn.begin());
        let _new = admit(&tracker);
        assert!(is_evicted(&old));
        assert!(!is_evicted(&recent));
        assert!(!is_evicted(&busy));
    }

    #[tokio::test(start_paused = true)]
    async fn with_every_connection_busy_a_new_one_is_refused() {
        let tracker = Tracker::new(1);
        let busy = admit(&tracker);
        busy.conn.begin().keep_busy();
        assert!(matches!(tracker.admit(), Admitted::Full));
        drop(busy);
        assert_eq!(tracker.len(), 0, "a dropped slot frees its place");
        let _ = admit(&tracker);
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_waits_for_requests_and_uses_the_right_timeout() {
        let tracker = Tracker::new(10);
        let slot = admit(&tracker);
        let conn = slot.conn.clone();
        let first = Duration::from_secs(3);
        let idle = Duration::from_secs(60);
        let started = Instant::now();
        assert_eq!(conn.expired(first, idle).await, Expiry::Silent);
        assert_eq!(started.elapsed(), first, "never served: the header-read timeout");

        let request = conn.begin();
        let expiry = tokio::spawn({
            let conn = conn.clone();
            async move { conn.expired(first, idle).await }
        });
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(!expiry.is_finished(), "a request in flight never expires");
        let ended = Instant::now();
        drop(request);
        assert_eq!(expiry.await.unwrap(), Expiry::Idle);
        assert_eq!(
            ended.elapsed(),
            idle,
            "served: the idle timeout from the end of the request"
        );
    }
}
