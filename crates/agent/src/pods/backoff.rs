//! Upstream's restart back-off (CrashLoopBackOff) and image pull back-off, as pure arithmetic on timestamps.
//!
//! The kubelet keeps one back-off entry per container. A container that dies while its entry's delay has not yet
//! passed since it finished waits (`CrashLoopBackOff`); otherwise it is restarted at once and the delay doubles,
//! from 10 s up to 300 s. An entry not touched for twice the maximum (10 minutes) is forgotten, so a container
//! that ran fine for ten minutes starts again from 10 s. Times are wall-clock because the finish times come from
//! the container runtime; every function takes `now` so tests need no clock.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Upstream's `containerBackOffPeriod` and `imageBackOffPeriod`.
pub const INITIAL: Duration = Duration::from_secs(10);
/// Upstream's `MaxContainerBackOff` and `MaxImageBackOff`.
pub const MAX: Duration = Duration::from_secs(300);

/// One container's back-off state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backoff {
    entry: Option<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    delay: Duration,
    last_update: DateTime<Utc>,
}

impl Backoff {
    /// When the container that failed at `event_time` may next be started, or `None` if it may start now.
    /// (Upstream's `IsInBackOffSince`.)
    pub fn blocked_until(&self, event_time: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let entry = self.entry.as_ref()?;
        if expired(event_time, entry.last_update) {
            return None;
        }
        let until = event_time.checked_add_signed(chrono::Duration::from_std(entry.delay).ok()?)?;
        (now < until).then_some(until)
    }

    /// Records a (re)start at `now`: the next failure waits `INITIAL` the first time, double the previous delay
    /// after that, up to `MAX`. (Upstream's `Next`.)
    pub fn next(&mut self, now: DateTime<Utc>) {
        let delay = match &self.entry {
            Some(entry) if !expired(now, entry.last_update) => (entry.delay * 2).min(MAX),
            _ => INITIAL,
        };
        self.entry = Some(Entry {
            delay,
            last_update: now,
        });
    }

    /// The delay the next failure will wait, for messages like `back-off 20s restarting failed container`.
    pub fn current_delay(&self) -> Duration {
        self.entry.as_ref().map(|e| e.delay).unwrap_or(INITIAL)
    }
}

/// "Consider stable if it's ok for twice the maxDuration" (client-go `hasExpired`).
fn expired(event_time: DateTime<Utc>, last_update: DateTime<Utc>) -> bool {
    event_time.signed_duration_since(last_update) > chrono::Duration::seconds(2 * MAX.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn first_failure_restarts_at_once_then_delays_double_to_the_cap() {
        let mut b = Backoff::default();
        assert_eq!(b.blocked_until(t(0), t(0)), None);
        b.next(t(0));
        // Second crash at t=1: must wait 10 s from its finish.
        assert_eq!(b.blocked_until(t(1), t(2)), Some(t(11)));
        assert_eq!(b.blocked_until(t(1), t(11)), None);
        b.next(t(11));
        assert_eq!(b.blocked_until(t(12), t(12)), Some(t(32)));
        for now in 32..42 {
            b.next(t(now));
        }
        assert_eq!(b.current_delay(), MAX);
    }

    #[test]
    fn ten_minutes_without_trouble_resets_the_delay() {
        let mut b = Backoff::default();
        b.next(t(0));
        b.next(t(10));
        assert_eq!(b.current_delay(), Duration::from_secs(20));
        // Crashes 11 minutes after the last restart: not in back-off, and the next delay starts over.
        assert_eq!(b.blocked_until(t(670), t(670)), None);
        b.next(t(670));
        assert_eq!(b.current_delay(), INITIAL);
    }
}
