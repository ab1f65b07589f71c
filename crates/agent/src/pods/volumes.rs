//! A pod's volumes on the host: one directory per volume under `<data-dir>/pods/<uid>/volumes/`, bind-mounted into
//! the containers. emptyDir volumes are plain directories that live as long as the pod; configMap and secret
//! volumes are projected with [`crate::volume::write_atomic`] on every sync, so an edit of the ConfigMap or Secret
//! shows up in the running containers' files within one resync interval, as it does upstream.
//!
//! Other volume types are refused with a clear message rather than silently ignored. Mounts with a `subPath` get
//! their own bind mount under `<data-dir>/pods/<uid>/volume-subpaths/` ([`super::subpath`]); they are taken off
//! before the pod's directory is removed.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::env::Sources;
use super::spec::VolumePath;
use super::{subpath, Context};
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

/// Prepares the subPath mounts of container `c` (see [`subpath`]): each `(mount index, subPath)` of
/// `sub_paths` is opened beneath its volume and bind-mounted onto the mount's target under the pod directory.
/// Returns each target by mount index. Errors are `CreateContainerConfigError` messages in the kubelet's words,
/// with the reason added (it never names a host path).
pub(super) async fn prepare_sub_paths(
    ctx: &Context,
    identity: &PodIdentity,
    c: &Container,
    volumes: &BTreeMap<String, VolumePath>,
    sub_paths: Vec<(usize, String)>,
) -> Result<BTreeMap<usize, String>, String> {
    let mut jobs = Vec::new();
    for (index, sub_path) in sub_paths {
        let Some(mount) = c.volume_mounts.as_ref().and_then(|m| m.get(index)) else {
            continue;
        };
        let volume = volumes.get(&mount.name).ok_or_else(|| {
            format!(
                "cannot find volume {:?} to mount into container {:?}",
                mount.name, c.name
            )
        })?;
        let target = subpath::target_path(&pod_dir(ctx, identity), &mount.name, &c.name, index);
        let target_text = target
            .to_str()
            .ok_or_else(|| "data directory path is not UTF-8".to_string())?
            .to_string();
        let context = format!(
            "failed to prepare subPath for volumeMount {:?} of container {:?}",
            mount.name, c.name
        );
        jobs.push((
            index,
            PathBuf::from(&volume.host_path),
            sub_path,
            target,
            target_text,
            context,
        ));
    }
    tokio::task::spawn_blocking(move || {
        let mut out = BTreeMap::new();
        for (index, root, sub_path, target, target_text, context) in jobs {
            subpath::mount(&root, &sub_path, &target).map_err(|e| format!("{context}: {e}"))?;
            out.insert(index, target_text);
        }
        Ok(out)
    })
    .await
    .map_err(|e| format!("preparing subPath mounts: {e}"))?
}

/// Removes the pod's volume directories once its containers are gone. The subPath mounts come off first; if one
/// will not, the directory is left in place (and a warning logged) rather than removed recursively through a
/// mount into a volume or, worse, somewhere else.
pub(super) async fn remove(ctx: &Context, identity: &PodIdentity) {
    remove_dir(pod_dir(ctx, identity)).await;
}

async fn remove_dir(dir: PathBuf) {
    let for_task = dir.clone();
    let result = tokio::task::spawn_blocking(move || {
        subpath::clean(&for_task)?;
        std::fs::remove_dir_all(&for_task)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    match result {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(%error, dir = %dir.display(), "removing pod volumes failed"),
    }
}

/// Removes the directories of pods that are not in `keep` (deleted while the agent was down, so no worker ever
/// terminated them), with their subPath mounts. Directories changed since `listed_at` may belong to pods that
/// arrived after the list and are left alone.
pub(super) async fn remove_orphans(ctx: &Context, keep: &HashSet<String>, listed_at: SystemTime) {
    let root = ctx.config.data_dir.join("pods");
    let Ok(mut entries) = tokio::fs::read_dir(&root).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let uid = entry.file_name().to_string_lossy().into_owned();
        if keep.contains(&uid) {
            continue;
        }
        let recent = entry
            .metadata()
            .await
            .and_then(|m| m.modified())
            .map_or(true, |modified| modified >= listed_at);
        if recent {
            continue;
        }
        tracing::info!(pod_uid = %uid, "removing volumes of a pod that no longer exists");
        remove_dir(entry.path()).await;
    }
}
