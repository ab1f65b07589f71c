//! A pod's volumes on the host: one directory per volume under `<data-dir>/pods/<uid>/volumes/`, bind-mounted into
//! the containers. emptyDir volumes are plain directories that live as long as the pod; configMap and secret
//! volumes are projected with [`crate::volume::write_atomic`] on every sync, so an edit of the ConfigMap or Secret
//! shows up in the running containers' files within one resync interval, as it does upstream.
//!
//! Other volume types are refused with a clear message rather than silently ignored.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;

use super::env::Sources;
use super::spec::VolumePath;
use super::Context;
use crate::labels::PodIdentity;
use crate::volume;

fn pod_dir(ctx: &Context, identity: &PodIdentity) -> PathBuf {
    ctx.config.data_dir.join("pods").join(&identity.uid)
}

/// Creates or refreshes every volume of the pod; returns each one's host path. Errors are upstream's FailedMount
/// messages.
pub(super) async fn prepare(
    ctx: &Context,
    pod: &Pod,
    identity: &PodIdentity,
    sources: &mut Sources,
) -> Result<BTreeMap<String, VolumePath>, String> {
    let mut paths = BTreeMap::new();
    let Some(volumes) = pod.spec.as_ref().and_then(|s| s.volumes.as_ref()) else {
        return Ok(paths);
    };
    let root = pod_dir(ctx, identity).join("volumes");
    for v in volumes {
        let fail = |e: &dyn std::fmt::Display| format!("MountVolume.SetUp failed for volume {:?} : {e}", v.name);
        let (kind, read_only) = if v.empty_dir.is_some() {
            ("empty-dir", false)
        } else if v.config_map.is_some() {
            ("configmap", true)
        } else if v.secret.is_some() {
            ("secret", true)
        } else {
            return Err(fail(
                &"volume type not supported by berth (emptyDir, configMap and secret are)",
            ));
        };
        let dir = root.join(kind).join(&v.name);
        let payload = if let Some(source) = &v.config_map {
            let cm = sources
                .config_map(&ctx.client, &identity.namespace, &source.name)
                .await
                .map_err(|e| fail(&e))?;
            Some(volume::configmap_payload(source, cm.as_ref()).map_err(|e| fail(&e))?)
        } else if let Some(source) = &v.secret {
            let name = source.secret_name.clone().unwrap_or_default();
            let secret = sources
                .secret(&ctx.client, &identity.namespace, &name)
                .await
                .map_err(|e| fail(&e))?;
            Some(volume::secret_payload(source, secret.as_ref()).map_err(|e| fail(&e))?)
        } else {
            None
        };
        let dir_for_task = dir.clone();
        tokio::task::spawn_blocking(move || match payload {
            Some(payload) => volume::write_atomic(&dir_for_task, &payload).map(|_| ()),
            None => volume::empty_dir(&dir_for_task),
        })
        .await
        .map_err(|e| fail(&e))?
        .map_err(|e| fail(&e))?;
        let host_path = dir
            .to_str()
            .ok_or_else(|| fail(&"data directory path is not UTF-8"))?
            .to_string();
        paths.insert(
            v.name.clone(),
            VolumePath {
                host_path,
                always_read_only: read_only,
            },
        );
    }
    Ok(paths)
}

/// Removes the pod's volume directories once its containers are gone.
pub(super) async fn remove(ctx: &Context, identity: &PodIdentity) {
    let dir = pod_dir(ctx, identity);
    match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(%error, dir = %dir.display(), "removing pod volumes failed"),
    }
}
