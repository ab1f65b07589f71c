//! Kubernetes Events from the agent (`kubectl describe pod` shows them): Pulling, Pulled, Created, Started,
//! Killing, Unhealthy, BackOff, Failed.
//!
//! Recording never blocks a pod worker: events go through a channel to one task that writes them. Like client-go's
//! event correlator, a repeat of the same event (same object, reason, message and type) within ten minutes bumps
//! `count` and `lastTimestamp` of the existing Event instead of creating a new one — that is how `kubectl describe`
//! shows "Back-off restarting failed container (x5 over 2m)".

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a repeated event is folded into the previous one.
const CORRELATION_WINDOW: Duration = Duration::from_secs(600);

/// `Normal` or `Warning`, the two Kubernetes event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub object: ObjectReference,
    pub event_type: EventType,
    pub reason: String,
    pub message: String,
}

/// A cheap handle for recording events; clone it into every worker.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<EventRecord>,
}

impl Recorder {
    /// Starts the writer task for events reported by `node` (the Event's `source.host`).
    pub fn spawn(client: kube::Client, node: String) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_events(client, node, rx));
        Recorder { tx }
    }

    /// Records an event about `object`. Never fails: events are best effort, like upstream's.
    pub fn record(&self, object: &ObjectReference, event_type: EventType, reason: &str, message: impl Into<String>) {
        let _ = self.tx.send(EventRecord {
            object: object.clone(),
            event_type,
            reason: reason.to_string(),
            message: message.into(),
        });
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    uid: String,
    field_path: String,
    reason: String,
    message: String,
    event_type: EventType,
}

struct Seen {
    name: String,
    count: i32,
    last: Instant,
}

async fn write_events(client: kube::Client, node: String, mut rx: mpsc::UnboundedReceiver<EventRecord>) {
    let mut seen: HashMap<Key, Seen> = HashMap::new();
    while let Some(record) = rx.recv().await {
        let namespace = record.object.namespace.clone().unwrap_or_else(|| "default".to_string());
        let key = Key {
            namespace: namespace.clone(),
            uid: record.object.uid.clone().unwrap_or_default(),
            field_path: record.object.field_path.clone().unwrap_or_default(),
            reason: record.reason.clone(),
            message: record.message.clone(),
            event_type: record.event_type,
        };
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        let now = crate::time::now();
        seen.retain(|_, s| s.last.elapsed() < CORRELATION_WINDOW);
        if let Some(previous) = seen.get_mut(&key) {
            previous.count = previous.count.saturating_add(1);
            previous.last = Instant::now();
            let patch = serde_json::json!({"count": previous.count, "lastTimestamp": now});
            match api
                .patch(&previous.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => continue,
                // The Event expired (events live an hour) or was deleted: write a fresh one below.
                Err(error) => tracing::debug!(%error, name = %previous.name, "could not update event"),
            }
        }
        let object_name = record.object.name.clone().unwrap_or_default();
        let name = format!(
            "{}.{:x}",
            object_name,
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: record.object.clone(),
            reason: Some(record.reason.clone()),
            message: Some(record.message.clone()),
            type_: Some(record.event_type.as_str().to_string()),
            source: Some(EventSource {
                component: Some("kubelet".to_string()),
                host: Some(node.clone()),
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now.clone()),
            event_time: None::<MicroTime>,
            count: Some(1),
            reporting_component: Some("kubelet".to_string()),
            reporting_instance: Some(node.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                seen.insert(
                    key,
                    Seen {
                        name,
                        count: 1,
                        last: Instant::now(),
                    },
                );
            }
            Err(error) => tracing::debug!(%error, reason = %record.reason, "could not record event"),
        }
    }
}
