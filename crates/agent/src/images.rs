//! Images without a registry: the agent makes sure its built-in workload image (which is also every pod's infra
//! container) is present in the engine, and imports the `docker save` tarballs found in its import directory at
//! start — the way k3s loads air-gap images from `agent/images/`.

use std::path::Path;

use berth_runtime::ContainerRuntime;

use crate::AgentError;

/// Loads the built-in workload image unless the engine already has exactly this build of it.
pub async fn ensure_builtin(runtime: &dyn ContainerRuntime) -> Result<(), AgentError> {
    let image = berth_image::workload_image();
    let present = runtime
        .inspect_image(&image.reference)
        .await
        .map_err(|source| AgentError::Runtime {
            step: "inspecting the built-in image",
            source,
        })?;
    if present.is_some_and(|found| found.id == image.id) {
        return Ok(());
    }
    tracing::info!(image = %image.reference, "loading the built-in workload image");
    runtime
        .import_image(image.bytes.into())
        .await
        .map_err(|source| AgentError::Runtime {
            step: "loading the built-in image",
            source,
        })
}

/// Imports every `*.tar` file in `dir` (sorted by name). A tarball that fails to load is logged and skipped: one bad
/// file must not keep the node from running pods.
pub async fn import_dir(runtime: &dyn ContainerRuntime, dir: &Path) -> Result<usize, AgentError> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(AgentError::Io {
                step: "reading the image import directory",
                source,
            })
        }
    };
    let mut files = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(|source| AgentError::Io {
        step: "reading the image import directory",
        source,
    })? {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "tar") {
            files.push(path);
        }
    }
    files.sort();
    let mut loaded = 0;
    for path in files {
        match tokio::fs::read(&path).await {
            Ok(bytes) => match runtime.import_image(bytes.into()).await {
                Ok(()) => {
                    tracing::info!(file = %path.display(), "imported image tarball");
                    loaded += 1;
                }
                Err(error) => tracing::warn!(%error, file = %path.display(), "image tarball failed to load"),
            },
            Err(error) => tracing::warn!(%error, file = %path.display(), "image tarball unreadable"),
        }
    }
    Ok(loaded)
}
