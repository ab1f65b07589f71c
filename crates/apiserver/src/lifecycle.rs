//! Housekeeping the API server does on its own data, as upstream's apiserver and namespace controller do:
//! the built-in namespaces and the `kubernetes` Service at start-up, emptying and finalizing namespaces being
//! deleted, and expiring Events after their TTL. Nothing here touches containers.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use berth_api::resources::{by_plural, RESOURCES};
use berth_api::{meta, ResourceInfo};
use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::registry::{DeleteOptions, Deleted, WriteOptions};
use crate::AppState;

/// The namespaces every cluster has.
pub const BUILTIN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

fn resource(group: &str, plural: &str) -> Result<&'static ResourceInfo> {
    by_plural(group, "v1", plural).ok_or_else(|| Error(berth_api::ApiError::internal(format!("{plural} not served"))))
}

fn ignore_exists<T>(r: Result<T>) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(Error(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the built-in namespaces and the `kubernetes` Service with its Endpoints, when absent.
pub async fn bootstrap(state: &AppState, secure_port: u16) -> Result<()> {
    let ns = resource("", "namespaces")?;
    for name in BUILTIN_NAMESPACES {
        let obj = json!({"metadata": {"name": name}});
        ignore_exists(state.registry.create(ns, None, obj, &WriteOptions::default()).await)?;
    }
    let svc = resource("", "services")?;
    let ip = state.allocator.first_ip().to_string();
    let service = json!({
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": secure_port}],
            "sessionAffinity": "None",
        },
    });
    ignore_exists(
        state
            .registry
            .create(svc, Some("default"), service, &WriteOptions::default())
            .await,
    )?;
    let ep = resource("", "endpoints")?;
    let host = state.advertise.ip().to_string();
    let endpoints = json!({
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": host}], "ports": [{"name": "https", "port": secure_port, "protocol": "TCP"}]}],
    });
    ignore_exists(
        state
            .registry
            .create(ep, Some("default"), endpoints, &WriteOptions::default())
            .await,
    )?;
    Ok(())
}

/// Runs the namespace finalizer and the event TTL until `shutdown` fires.
///
/// Each is supervised: a pass that panics is logged and the loop carries on with the next pass, so one bad object
/// can never stop namespace deletion or event expiry for the rest of the cluster.
pub async fn run(state: AppState, event_ttl: Duration, mut shutdown: watch::Receiver<bool>) {
    let ns_state = state.clone();
    let mut ns_shutdown = shutdown.clone();
    let namespaces = tokio::spawn(async move {
        tokio::select! {
            _ = namespace_loop(ns_state) => {}
            _ = ns_shutdown.changed() => {}
        }
    });
    let mut ticker = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                match AssertUnwindSafe(expire_events(&state, event_ttl)).catch_unwind().await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e.0, "expiring events failed"),
                    Err(panic) => tracing::error!(panic = panic_message(&panic), "expiring events panicked"),
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    let _ = namespaces.await;
}

/// The text of a caught panic, for the log.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Watches namespaces; whenever one is being deleted, deletes its contents and finalizes it.
async fn namespace_loop(state: AppState) {
    loop {
        let busy = AssertUnwindSafe(finalize_namespaces(&state))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                tracing::error!(panic = panic_message(&panic), "namespace finalization panicked");
                true
            });
        if busy {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        // Idle: wait for any namespace change (or a periodic resync).
        let Ok(ns) = resource("", "namespaces") else { return };
        let prefix = crate::target::collection_prefix(ns, None);
        let rev = state.registry.store().current_revision();
        match state.registry.store().watch(&prefix, rev).await {
            Ok(mut events) => {
                let _ = tokio::time::timeout(Duration::from_secs(30), events.next()).await;
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// One pass over terminating namespaces. Returns whether any is still waiting (for its contents to go, or after a
/// failure). Each namespace is handled on its own: an error or a panic in one is logged and the others go on.
pub(crate) async fn finalize_namespaces(state: &AppState) -> bool {
    let names = match terminating_namespaces(state).await {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!(error = %e.0, "listing namespaces failed");
            return true;
        }
    };
    let mut busy = false;
    for name in names {
        match AssertUnwindSafe(finalize_namespace(state, &name)).catch_unwind().await {
            Ok(Ok(done)) => busy |= !done,
            Ok(Err(e)) => {
                tracing::warn!(namespace = %name, error = %e.0, "namespace finalization failed");
                busy = true;
            }
            Err(panic) => {
                tracing::error!(namespace = %name, panic = panic_message(&panic), "namespace finalization panicked");
                busy = true;
            }
        }
    }
    busy
}

/// The names of the namespaces being deleted.
async fn terminating_namespaces(state: &AppState) -> Result<Vec<String>> {
    let ns_r = resource("", "namespaces")?;
    let (namespaces, _) = state.registry.list(ns_r, None).await?;
    Ok(namespaces
        .iter()
        .filter(|n| meta::str_field(n, "deletionTimestamp").is_some())
        .map(|n| meta::name(n).to_string())
        .collect())
}

/// Deletes what is left in one terminating namespace, and finalizes it once it is empty. Returns whether it was
/// finalized. An object that cannot be deleted is logged and skipped, so the rest of the namespace still goes.
async fn finalize_namespace(state: &AppState, name: &str) -> Result<bool> {
    let ns_r = resource("", "namespaces")?;
    let mut remaining = 0usize;
    for r in RESOURCES.iter().filter(|r| r.namespaced()) {
        let (items, _) = state.registry.list(r, Some(name)).await?;
        for item in items {
            remaining += 1;
            if meta::str_field(&item, "deletionTimestamp").is_some() {
                continue;
            }
            match state
                .registry
                .delete(r, Some(name), meta::name(&item), &DeleteOptions::default())
                .await
            {
                Ok(Deleted::Gone(_)) => remaining -= 1,
                Ok(Deleted::Pending(_)) => {}
                Err(Error(e)) if e.code == 404 => remaining -= 1,
                Err(Error(e)) => tracing::warn!(
                    namespace = %name,
                    resource = r.plural,
                    object = meta::name(&item),
                    error = %e,
                    "deleting a namespace's object failed"
                ),
            }
        }
    }
    if remaining > 0 {
        return Ok(false);
    }
    // Empty: drop the `kubernetes` finalizer; with no finalizers left the namespace is deleted.
    let r = state
        .registry
        .write_loop(
            ns_r,
            None,
            name,
            None,
            &WriteOptions::default(),
            |old| {
                let mut next = old.clone();
                next["spec"]["finalizers"] = json!([]);
                Ok(next)
            },
            None,
        )
        .await;
    match r {
        Ok(_) => Ok(true),
        Err(Error(e)) if e.code == 404 => Ok(true),
        Err(e) => Err(e),
    }
}

/// Deletes Events older than the TTL (upstream's `--event-ttl`, one hour by default).
async fn expire_events(state: &AppState, ttl: Duration) -> Result<()> {
    let r = resource("", "events")?;
    let (events, _) = state.registry.list(r, None).await?;
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1));
    for ev in events {
        let stamp = ev
            .get("lastTimestamp")
            .and_then(Value::as_str)
            .or_else(|| ev.get("eventTime").and_then(Value::as_str))
            .or_else(|| meta::str_field(&ev, "creationTimestamp"));
        let old = stamp
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .is_some_and(|t| t.with_timezone(&chrono::Utc) < cutoff);
        if old {
            let ns = meta::namespace(&ev).to_string();
            match state
                .registry
                .delete(r, Some(&ns), meta::name(&ev), &DeleteOptions::default())
                .await
            {
                Ok(_) => {}
                Err(Error(e)) if e.code == 404 => {}
                // One Event that cannot be deleted must not keep the others forever.
                Err(Error(e)) => {
                    tracing::warn!(namespace = %ns, event = meta::name(&ev), error = %e, "expiring an event failed")
                }
            }
        }
    }
    Ok(())
}
