//! The conformance suite: what every [`Store`] backend must do, written once and run against each backend.
//!
//! Each case is an `async fn` taking a factory that opens a fresh store with a given [`StoreConfig`]; the
//! `conformance!` macro at the bottom instantiates every case as a test for the memory and the sled backend. A
//! future backend (etcd, say) gets the whole suite by adding one line there. Backend-specific behaviour (surviving
//! a restart or a crash) is tested next to the backend instead.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{
    Event, EventKind, KeyValue, MemoryStore, Revision, SledStore, Store, StoreConfig, StoreError, WatchStream,
};

/// A store under test, plus whatever must outlive it (sled's temporary directory).
pub(crate) struct Fixture {
    pub(crate) store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for Fixture {
    type Target = dyn Store;

    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

fn memory(config: StoreConfig) -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::with_config(config)),
        _dir: None,
    }
}

fn sled(config: StoreConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with_config(dir.path().join("db"), config).unwrap();
    Fixture {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// The next `n` items of a watch, failing the test instead of hanging if they do not come.
async fn take(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
            Ok(Some(Ok(event))) => events.push(event),
            Ok(other) => panic!("watch ended early after {} events: {other:?}", events.len()),
            Err(_) => panic!("watch stalled after {} of {n} events", events.len()),
        }
    }
    events
}

/// Asserts that nothing more arrives on the watch for a short while.
async fn assert_quiet(stream: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(100), stream.next()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

fn summary(events: &[Event]) -> Vec<(EventKind, &str, u64)> {
    events
        .iter()
        .map(|e| (e.kind, e.kv.key.as_str(), e.revision().0))
        .collect()
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

pub(crate) async fn create_then_get_returns_the_value_at_a_new_revision(open: fn(StoreConfig) -> Fixture) {
    let store = open(StoreConfig::default());
    assert_eq!(store.current_revision(), Revision(0));
    let created = store.create("/a", b("one")).await.unwrap();
    assert_eq!(created.key, "/a");
    assert_eq!(created.value, b("one"));
    assert_eq!(created.mod_revision, Revision(1));
    assert_eq!(created.create_revision, Revision(1));
    assert_eq!(store.current_revision(), Revision(1));
    assert_eq!(store.get("/a").await.unwrap(), Some(created));
    assert_eq!(store.get("/missing").await.unwrap(), None);
}

pub(crate) async fn creating_an_existing_key_fails_and_consumes_no_revision(open: fn(StoreConfig) -> Fixture) {
    let store = open(StoreConfig::default());
    store.create("/a", b("one")).await.unwrap();
    let err = store.create("/a", b("two")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { key } if key == "/a"),
        "{err:?}"
    );
    assert_eq!(store.current_revision(), Revision(1));
    assert_eq!(store.get("/a").await.unwrap().unwrap().value, b("one"));
    assert_eq!(store.create("/b", b("x")).await.unwrap().mod_revision, Revision(2));
}

pub(crate) async fn update_replaces_the_value_and_keeps_the_create_revision(open: fn(StoreConfig) -> Fixture) {
    let store = open(StoreConfig::default());
    let created = store.create("/a", b("one")).await.unwrap();
    let guarded = store.update("/a", b("two"), Some(created.mod_revision)).await.unwrap();
    assert_eq!(
        (guarded.create_revision, guarded.mod_revision),
        (Revision(1), Revision(2))
    );
    let unconditional = store.update("/a", b("three"), None).await.unwrap();
    assert_eq!(
        (unconditional.create_revision, unconditional.mod_revision),
        (Revision(1), Revision(3))
    );
    assert_eq!(store.get("/a").await.unwrap(), Some(unconditional));
}

pub(crate) async fn failed_preconditions_report_not_found_or_conflict(open: fn(StoreConfig) -> Fixture) {
    let store = open(StoreConfig::default());
    store.create("/a", b("one")).await.unwrap();
    store.update("/a", b("two"), None).await.unwrap();
    let stale = Some(Revision(1));

    let describe = |result: Result<KeyValue, StoreError>| match result {
        Ok(kv) => format!("ok at {}", kv.mod_revision),
        Err(StoreError::NotFound { key }) => format!("not found {key}"),
        Err(StoreError::Conflict { key, expected, actual }) => format!("conflict {key} {expected} {actual}"),
        Err(other) => format!("other {other}"),
    };
    assert_eq!(
        describe(store.update("/missing", b("x"), None).await),
        "not found /missing"
    );
    assert_eq!(
        describe(store.update("/missing", b("x"), stale).await),
        "not found /missing"
    );
    assert_eq!(describe(store.update("/a", b("x"), stale).await), "conflict /a 1 2");
    assert_eq!(describe(store.delete("/missing", None).await), "not found /missing");
    assert_eq!(describe(store.delete("/missing", stale).await), "not found /missing");
    assert_eq!(describe(store.delete("/a", stale).await), "conflict /a 1 2");
    // None of the failures consumed a revision or changed the value.
    assert_eq!(store.current_revision(), Revision(2));
    assert_eq!(store.get("/a").await.unwrap().unwrap().value, b("two"));
}

pub(crate) async fn delete_returns_the_last_value_at_the_delete_revision(open: fn(StoreConfig) -> Fixture) {
    let store = open(StoreConfig::default());
    store.create("/a", b("one")).await.unwrap();
    let updated = store.update("/a", b("two"), None).await.unwrap();
    let deleted = store.delete("/a", Some(updated.mod_revision)).await.unwrap();
    assert_eq!(deleted.value, b("two"));
    assert_eq!(
        (deleted.create_revision, deleted.mod_revision),
        (Revision(1), Revision(3))
    );
    assert_eq!(store.get("/a").await.unwrap(), None);
    // Recreating starts a new life for the key, with a new create revision.
    let recreated = store.create("/a", b("again")).await.unwrap();
    assert_eq!(
        (recreated.create_revision, recreated.mod_revision),
        (Revision(4), Revision(4))
    );
}

pub(crate) async fn list_returns_a_sorted_prefix_snapshot_at_the_current_revision(open: fn(StoreConfig) -> Fixture) {
    let store = open(StoreConfig::default());
    for key in ["/p/c", "/p/a", "/q/a", "/p/b", "/pz", "/o"] {
        store.create(key, b(key)).await.unwrap();
    }
    store.delete("/p/b", None).await.unwrap();
    let (items, revision) = store.list("/p/", None).await.unwrap();
    assert_eq!(keys(&items), ["/p/a", "/p/c"]);
    assert_eq!(items[0].value, b("/p/a"));
    assert_eq!(revision, Revision(7));
    let (all, _) = store.list("", None).await.unwrap();
    assert_eq!(keys(&all), ["/o", "/p/a", "/p/c", "/pz", "/q/a"]);
    let (none, revision) = store.list("/nothing/", None).await.unwrap();
    assert!(none.is_empty());
    assert_eq!(revision, Revision(7));
}

pub(crate) async fn list_at_an_older_revision_rebuilds_that_snapshot(open: fn(StoreConfig) -> Fixture) {
    let store = open(StoreConfig::default());
    let mut snapshots = vec![(Revision(0), Vec::new())];
    for step in 0..30u32 {
        let key = format!("/p/{}", step % 7);
        let result = match step % 3 {
            0 => store.create(&key, b(&format!("c{step}"))).await,
            1 => store.update(&key, b(&format!("u{step}")), None).await,
            _ => store.delete(&key, None).await,
        };
        if step % 5 == 0 {
            store.create(&format!("/other/{step}"), b("noise")).await.unwrap();
        }
        if result.is_ok() {
            let (items, revision) = store.list("/p/", None).await.unwrap();
            snapshots.push((revision, items));
        }
    }
    assert!(snapshots.len() > 10, "the script should mostly succeed");
    for (revision, items) in &snapshots {
        let (past, at) = store.list("/p/", Some(*revision)).await.unwrap();
        assert_eq!(at, *revision);
        assert_eq!(&past, items, "list at {revision}");
    }
}

pub(crate) async fn list_outside_the_retained_history_fails(open: fn(StoreConfig) -> Fixture) {
    let store = open(StoreConfig::default());
    for i in 0..5 {
        store.create(&format!("/k{i}"), b("v")).await.unwrap();
    }
    let err = store.list("/", Some(Revision(6))).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::FutureRevision {
                requested: Revision(6),
                current: Revision(5)
            }
        ),
        "{err:?}"
    );
    store.compact(Revision(3)).await.unwrap();
    assert_eq!(store.compacted_revision(), Revision(3));
    let err = store.list("/", Some(Revision(2))).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Compacted {
                requested: Revision(2),
                compacted: Revision(3)
            }
        ),
        "{err:?}"
    );
    let (items, _) = store.list("/", Some(Revision(3))).await.unwrap();
    assert_eq!(keys(&items), ["/k0", "/k1", "/k2"]);
}

pub(crate) async fn watch_replays_history_then_streams_live_events_in_order(open: fn(StoreConfig) -> Fixture) {
    let store = open(StoreConfig::default());
    store.create("/a", b("1")).await.unwrap();
    store.update("/a", b("2"), None).await.unwrap();
    let mut watch = store.watch("/", Revision(0)).await.unwrap();
    store.create("/b", b("1")).await.unwrap();
    store.delete("/a", None).await.unwrap();
    let events = take(&mut watch, 4).await;
    assert_eq!(
        summary(&events),
        [
            (EventKind::Put, "/a", 1),
            (EventKind::Put, "/a", 2),
            (EventKind::Put, "/b", 3),
            (EventKind::Delete, "/a", 4)
        ]
    );
    assert_quiet(&mut watch).await;
}

pub(crate) async fn watch_events_say_what_changed(open: fn(StoreConfig) -> Fixture) {
    let store = open(StoreConfig::default());
    let mut watch = store.watch("/", Revision(0)).await.unwrap();
    let created = store.create("/a", b("1")).await.unwrap();
    let updated = store.update("/a", b("2"), None).await.unwrap();
    let deleted = store.delete("/a", None).await.unwrap();
    let events = take(&mut watch, 3).await;
    assert!(events[0].is_create());
    assert_eq!((&events[0].kv, &events[0].prev), (&created, &None));
    assert!(!events[1].is_create());
    assert_eq!((&events[1].kv, &events[1].prev), (&updated, &Some(created)));
    assert_eq!(events[2].kind, EventKind::Delete);
    assert_eq!((&events[2].kv, &events[2].prev), (&deleted, &Some(updated)));
}

pub(crate) async fn watch_resumes_after_the_given_revision(open: fn(StoreConfig) -> Fixture) {
    let store = open(StoreConfig::default());
    for i in 1..=5 {
        store.create(&format!("/k{i}"), b("v")).await.unwrap();
    }
    let mut watch = store.watch("/", Revision(3)).await.unwrap();
    let events = take(&mut watch, 2).await;
    assert_eq!(
        summary(&events),
        [(EventKind::Put, "/k4", 4), (EventKind::Put, "/k5", 5)]
    );
    let mut at_head = store.watch("/", Revision(5)).await.unwrap();
    assert_quiet(&mut at_head).await;
    store.create("/k6", b("v")).await.unwrap();
    assert_eq!(summary(&take(&mut at_head, 1).await), [(EventKind::Put, "/k6", 6)]);
    assert_eq!(summary(&take(&mut watch, 1).await), [(EventKind::Put, "/k6", 6)]);
}

pub(crate) async fn watch_sees_only_keys_under_its_prefix(open: fn(StoreConfig) -> Fixture) {
    let store = open(StoreConfig::default());
    store.create("/pods/a", b("v")).await.unwrap();
    store.create("/podsx/a", b("v")).await.unwrap();
    let mut watch = store.watch("/pods/", Revision(0)).await.unwrap();
    store.create("/nodes/a", b("v")).await.unwrap();
    store.create("/pods/b", b("v")).await.unwrap();
    let events = take(&mut watch, 2).await;
    assert_eq!(
        summary(&events),
        [(EventKind::Put, "/pods/a", 1), (EventKind::Put, "/pods/b", 4)]
    );
    assert_quiet(&mut watch).await;
}

pub(crate) async fn watch_and_compact_reject_revisions_outside_the_history(open: fn(StoreConfig) -> Fixture) {
    let store = open(StoreConfig::default());
    for i in 1..=5 {
        store.create(&format!("/k{i}"), b("v")).await.unwrap();
    }
    let err = store.watch("/", Revision(6)).await.err().unwrap();
    assert!(
        matches!(
            err,
            StoreError::FutureRevision {
                requested: Revision(6),
                current: Revision(5)
            }
        ),
        "{err:?}"
    );
    let err = store.compact(Revision(6)).await.unwrap_err();
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err:?}");

    store.compact(Revision(3)).await.unwrap();
    store.compact(Revision(2)).await.unwrap(); // already compacted: nothing to do
    assert_eq!(store.compacted_revision(), Revision(3));
    let err = store.watch("/", Revision(2)).await.err().unwrap();
    assert!(
        matches!(
            err,
            StoreError::Compacted {
                requested: Revision(2),
                compacted: Revision(3)
            }
        ),
        "{err:?}"
    );
    let mut watch = store.watch("/", Revision(3)).await.unwrap();
    assert_eq!(
        summary(&take(&mut watch, 2).await),
        [(EventKind::Put, "/k4", 4), (EventKind::Put, "/k5", 5)]
    );
    // Compaction is not a write: the revision does not move.
    assert_eq!(store.current_revision(), Revision(5));
}

pub(crate) async fn history_beyond_the_limit_is_compacted_automatically(open: fn(StoreConfig) -> Fixture) {
    let store = open(StoreConfig {
        history_limit: 5,
        ..StoreConfig::default()
    });
    for i in 1..=10 {
        store.create(&format!("/k{i:02}"), b("v")).await.unwrap();
    }
    assert_eq!(store.compacted_revision(), Revision(5));
    assert!(matches!(
        store.watch("/", Revision(4)).await.err(),
        Some(StoreError::Compacted { .. })
    ));
    let mut watch = store.watch("/", Revision(5)).await.unwrap();
    assert_eq!(
        take(&mut watch, 5).await.first().map(|e| e.revision()),
        Some(Revision(6))
    );
    let (items, _) = store.list("/", Some(Revision(5))).await.unwrap();
    assert_eq!(items.len(), 5);
}

pub(crate) async fn history_beyond_the_byte_limit_is_compacted_automatically(open: fn(StoreConfig) -> Fixture) {
    let value = |n: usize| Bytes::from(vec![b'x' + (n % 2) as u8; 1000]);
    let store = open(StoreConfig {
        history_bytes: 10_000,
        ..StoreConfig::default()
    });
    let mut last = store.create("/k", value(0)).await.unwrap();
    for n in 1..20 {
        last = store.update("/k", value(n), Some(last.mod_revision)).await.unwrap();
    }
    // Each update holds its new and its old 1000-byte value: four fit in 10,000 bytes, a fifth would not.
    assert_eq!(store.current_revision(), Revision(20));
    assert_eq!(store.compacted_revision(), Revision(16));
    assert!(matches!(
        store.watch("/", Revision(15)).await.err(),
        Some(StoreError::Compacted {
            requested: Revision(15),
            compacted: Revision(16)
        })
    ));
    assert!(matches!(
        store.list("/", Some(Revision(15))).await.err(),
        Some(StoreError::Compacted { .. })
    ));
    let mut watch = store.watch("/", Revision(16)).await.unwrap();
    let revisions: Vec<u64> = take(&mut watch, 4).await.iter().map(|e| e.revision().0).collect();
    assert_eq!(revisions, [17, 18, 19, 20]);
    let (at_16, _) = store.list("/", Some(Revision(16))).await.unwrap();
    assert_eq!(at_16.first().map(|kv| kv.mod_revision), Some(Revision(16)));

    // One write bigger than the whole budget leaves no history, and the store carries on from it.
    let big = store.update("/k", Bytes::from(vec![b'y'; 20_000]), None).await.unwrap();
    assert_eq!(store.compacted_revision(), big.mod_revision);
    let mut watch = store.watch("/", big.mod_revision).await.unwrap();
    let next = store.update("/k", value(0), None).await.unwrap();
    assert_eq!(take(&mut watch, 1).await[0].revision(), next.mod_revision);
}

pub(crate) async fn concurrent_writers_get_unique_revisions_and_a_watch_sees_every_write(
    open: fn(StoreConfig) -> Fixture,
) {
    const TASKS: usize = 50;
    const WRITES: usize = 20;
    let fixture = open(StoreConfig::default());
    let mut watch = fixture.watch("/", Revision(0)).await.unwrap();
    let writers: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = fixture.store.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..WRITES {
                    let key = format!("/t{task:02}/{i:02}");
                    let kv = store.create(&key, b("v")).await.unwrap();
                    acked.push((key, kv.mod_revision.0));
                }
                acked
            })
        })
        .collect();
    let mut acked = HashSet::new();
    for writer in writers {
        acked.extend(writer.await.unwrap());
    }
    let total = TASKS * WRITES;
    assert_eq!(acked.len(), total);
    let revisions: HashSet<u64> = acked.iter().map(|(_, rev)| *rev).collect();
    assert_eq!(revisions.len(), total, "revisions are unique");
    assert_eq!(fixture.current_revision(), Revision(total as u64));

    let events = take(&mut watch, total).await;
    let seen: Vec<u64> = events.iter().map(|e| e.revision().0).collect();
    assert_eq!(seen, (1..=total as u64).collect::<Vec<_>>(), "every revision, in order");
    let seen: HashSet<(String, u64)> = events.into_iter().map(|e| (e.kv.key, e.kv.mod_revision.0)).collect();
    assert_eq!(seen, acked);
}

pub(crate) async fn concurrent_creates_of_one_key_admit_exactly_one(open: fn(StoreConfig) -> Fixture) {
    let fixture = open(StoreConfig::default());
    let attempts: Vec<_> = (0..32)
        .map(|i| {
            let store = fixture.store.clone();
            tokio::spawn(async move { store.create("/contended", b(&i.to_string())).await })
        })
        .collect();
    let mut created = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(fixture.current_revision(), Revision(1));
}

pub(crate) async fn a_lagging_watcher_catches_up_without_losing_events(open: fn(StoreConfig) -> Fixture) {
    let store = open(StoreConfig {
        watch_buffer: 2,
        ..StoreConfig::default()
    });
    let mut watch = store.watch("/", Revision(0)).await.unwrap();
    // Sequential writes are one batch each, so the watcher falls far behind its two-batch live buffer.
    for i in 0..200 {
        store.create(&format!("/k{i:03}"), b("v")).await.unwrap();
    }
    let events = take(&mut watch, 200).await;
    let seen: Vec<u64> = events.iter().map(|e| e.revision().0).collect();
    assert_eq!(seen, (1..=200).collect::<Vec<_>>());
    store.create("/live", b("v")).await.unwrap();
    assert_eq!(summary(&take(&mut watch, 1).await), [(EventKind::Put, "/live", 201)]);
}

pub(crate) async fn a_watcher_lagging_past_the_history_ends_with_compacted(open: fn(StoreConfig) -> Fixture) {
    let store = open(StoreConfig {
        watch_buffer: 1,
        history_limit: 10,
        ..StoreConfig::default()
    });
    let mut watch = store.watch("/", Revision(0)).await.unwrap();
    for i in 0..50 {
        store.create(&format!("/k{i:02}"), b("v")).await.unwrap();
    }
    let item = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap();
    assert!(matches!(
        item,
        Some(Err(StoreError::Compacted {
            requested: Revision(0),
            compacted: Revision(40)
        }))
    ));
    assert!(watch.next().await.is_none(), "the stream ends after the error");
}

pub(crate) async fn dropping_the_store_ends_watches_with_closed(open: fn(StoreConfig) -> Fixture) {
    let fixture = open(StoreConfig::default());
    let mut watch = fixture.watch("/", Revision(0)).await.unwrap();
    fixture.create("/a", b("v")).await.unwrap();
    drop(fixture);
    assert_eq!(summary(&take(&mut watch, 1).await), [(EventKind::Put, "/a", 1)]);
    let item = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap();
    assert!(matches!(item, Some(Err(StoreError::Closed))), "{item:?}");
    assert!(watch.next().await.is_none());
}

/// Instantiates every case above once per backend, as `memory::<case>` and `sled::<case>`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::memory).await
                }
            )*
        }
        mod sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::sled).await
                }
            )*
        }
    };
}

conformance!(
    create_then_get_returns_the_value_at_a_new_revision,
    creating_an_existing_key_fails_and_consumes_no_revision,
    update_replaces_the_value_and_keeps_the_create_revision,
    failed_preconditions_report_not_found_or_conflict,
    delete_returns_the_last_value_at_the_delete_revision,
    list_returns_a_sorted_prefix_snapshot_at_the_current_revision,
    list_at_an_older_revision_rebuilds_that_snapshot,
    list_outside_the_retained_history_fails,
    watch_replays_history_then_streams_live_events_in_order,
    watch_events_say_what_changed,
    watch_resumes_after_the_given_revision,
    watch_sees_only_keys_under_its_prefix,
    watch_and_compact_reject_revisions_outside_the_history,
    history_beyond_the_limit_is_compacted_automatically,
    history_beyond_the_byte_limit_is_compacted_automatically,
    concurrent_writers_get_unique_revisions_and_a_watch_sees_every_write,
    concurrent_creates_of_one_key_admit_exactly_one,
    a_lagging_watcher_catches_up_without_losing_events,
    a_watcher_lagging_past_the_history_ends_with_compacted,
    dropping_the_store_ends_watches_with_closed,
);
