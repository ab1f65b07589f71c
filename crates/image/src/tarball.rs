//! The general image builder: one layer from a list of entries, its image config, and the `docker save` tarball
//! that wraps them. Everything is written in memory and deterministically; nothing here reads the file system or
//! talks to Docker.
//!
//! The tarball uses the format `docker save` has written since Docker 1.10, which `docker load` (and the
//! engine's `POST /images/load`, bollard's `import_image`) accepts:
//!
//! ```text
//! manifest.json          [{"Config": "<config hex>.json", "RepoTags": ["name:tag"],
//!                          "Layers": ["<layer hex>/layer.tar"]}]
//! <config hex>.json      the image config (OCI image config fields, Docker's capitalised container config)
//! <layer hex>/layer.tar  the uncompressed layer; <layer hex> is its sha256, the config's rootfs.diff_ids entry
//! ```
//!
//! The image id Docker reports is the sha256 of the config file's bytes, so identical input gives an identical id
//! and re-loading the same image is a no-op for the engine.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::ImageError;

/// Every timestamp in the image: the Unix epoch, so that builds are reproducible (no build time leaks in).
const EPOCH_SECONDS: u64 = 0;
const EPOCH_RFC3339: &str = "1970-01-01T00:00:00Z";
/// The architecture the workload binary was compiled for, in Docker's spelling (set by build.rs).
const ARCHITECTURE: &str = env!("BERTH_IMAGE_ARCH");

/// A built image, ready for `docker load` / bollard's `import_image`.
#[derive(Clone, PartialEq, Eq)]
pub struct ImageTarball {
    /// The `name:tag` the image is loaded as.
    pub reference: String,
    /// `sha256:<hex>` of the config JSON: the image ID Docker reports (`docker inspect -f {{.Id}}`).
    pub id: String,
    /// The tarball in `docker save` format.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for ImageTarball {
    /// Shows the size rather than megabytes of tar data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageTarball")
            .field("reference", &self.reference)
            .field("id", &self.id)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .finish()
    }
}

/// One entry of the image's single layer. Paths are absolute or relative to the image root (`/bin/sh` and
/// `bin/sh` mean the same); missing parent directories are added with mode 0755. Owner is always root (0:0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerEntry {
    /// A regular file with the given permission bits (e.g. `0o755`).
    File {
        /// Where the file lives in the image.
        path: String,
        /// Permission bits, including setuid/setgid/sticky if wanted.
        mode: u32,
        /// The file's contents.
        bytes: Vec<u8>,
    },
    /// A directory with the given permission bits (e.g. `0o1777` for `/tmp`).
    Dir {
        /// Where the directory lives in the image.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// A symbolic link to `target` (stored as given, absolute or relative).
    Symlink {
        /// Where the link lives in the image.
        path: String,
        /// What the link points to.
        target: String,
    },
}

impl LayerEntry {
    fn path(&self) -> &str {
        match self {
            LayerEntry::File { path, .. } | LayerEntry::Dir { path, .. } | LayerEntry::Symlink { path, .. } => path,
        }
    }
}

/// The runtime defaults an image carries: what `docker run IMAGE` (or a pod without `command`/`args`) runs.
/// Empty lists and `None` are left out of the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// The executable and its leading arguments (a pod's `command` replaces it).
    pub entrypoint: Vec<String>,
    /// Default arguments after the entrypoint (a pod's `args` replaces them).
    pub cmd: Vec<String>,
    /// Environment as `KEY=value` strings.
    pub env: Vec<String>,
    /// The working directory, absolute.
    pub working_dir: Option<String>,
    /// Documented ports, as `8080/tcp` or `53/udp`.
    pub exposed_ports: Vec<String>,
    /// The signal `docker stop` sends, e.g. `SIGTERM`.
    pub stop_signal: Option<String>,
    /// Image labels.
    pub labels: BTreeMap<String, String>,
}

/// Builds a one-layer image named `reference` (`name:tag`) holding `files`, with runtime defaults `config`.
pub fn build_tarball(reference: &str, files: &[LayerEntry], config: &ImageConfig) -> Result<ImageTarball, ImageError> {
    validate_reference(reference)?;
    let layer = layer_tar(files)?;
    let layer_hex = sha256_hex(&layer);

    let config_json = config_json(config, &layer_hex)?;
    let config_hex = sha256_hex(&config_json);

    let layer_path = format!("{layer_hex}/layer.tar");
    let config_path = format!("{config_hex}.json");
    let manifest = [ManifestEntry {
        config: &config_path,
        repo_tags: [reference],
        layers: [&layer_path],
    }];
    let manifest_json = serde_json::to_vec(&manifest).map_err(|source| ImageError::EncodeJson {
        what: "manifest",
        source,
    })?;

    let mut outer = tar::Builder::new(Vec::new());
    append(&mut outer, EntryType::Directory, &format!("{layer_hex}/"), 0o755, &[])?;
    append(&mut outer, EntryType::Regular, &layer_path, 0o644, &layer)?;
    append(&mut outer, EntryType::Regular, &config_path, 0o644, &config_json)?;
    append(&mut outer, EntryType::Regular, "manifest.json", 0o644, &manifest_json)?;
    let bytes = outer.into_inner().map_err(|source| ImageError::WriteTar {
        path: "<end>".to_string(),
        source,
    })?;

    Ok(ImageTarball {
        reference: reference.to_string(),
        id: format!("sha256:{config_hex}"),
        bytes,
    })
}

/// Checks `name:tag` with Docker's character rules, so a bad reference fails here rather than inside the engine.
fn validate_reference(reference: &str) -> Result<(), ImageError> {
    let invalid = |reason| ImageError::InvalidReference {
        reference: reference.to_string(),
        reason,
    };
    let (name, tag) = match reference.rsplit_once(':') {
        // A colon before the last slash belongs to a registry port (localhost:5000/app), not to a tag.
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => return Err(invalid("a tag is required (name:tag)")),
    };
    if reference.contains('@') {
        return Err(invalid("digest references cannot be loaded"));
    }
    let tag_ok = tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
    if !tag_ok {
        return Err(invalid("a tag is 1-128 of [A-Za-z0-9_.-], not starting with . or -"));
    }
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/' | ':'))
        && name.split('/').all(|part| !part.is_empty());
    if !name_ok {
        return Err(invalid("a name is lowercase [a-z0-9._-] components separated by /"));
    }
    Ok(())
}

/// Writes the layer: entries sorted by path so that parents precede children and the bytes never depend on the
/// caller's order.
fn layer_tar(files: &[LayerEntry]) -> Result<Vec<u8>, ImageError> {
    // Keyed by path components: component-wise order puts every directory right before its contents.
    let mut entries: BTreeMap<Vec<&str>, &LayerEntry> = BTreeMap::new();
    for entry in files {
        let components = normalise(entry.path())?;
        let joined = components.join("/");
        if entries.insert(components, entry).is_some() {
            return Err(ImageError::DuplicatePath { path: joined });
        }
    }
    // Every ancestor must be a directory; missing ones are added implicitly.
    let implicit_dir = LayerEntry::Dir {
        path: String::new(),
        mode: 0o755,
    };
    let paths: Vec<Vec<&str>> = entries.keys().cloned().collect();
    for components in &paths {
        for depth in 1..components.len() {
            let parent = &components[..depth];
            match entries.get(parent) {
                None => {
                    entries.insert(parent.to_vec(), &implicit_dir);
                }
                Some(LayerEntry::Dir { .. }) => {}
                Some(_) => {
                    return Err(ImageError::ParentNotDirectory {
                        path: components.join("/"),
                        parent: parent.join("/"),
                    })
                }
            }
        }
    }

    let mut layer = tar::Builder::new(Vec::new());
    for (components, entry) in &entries {
        let path = components.join("/");
        match entry {
            LayerEntry::File { mode, bytes, .. } => append(&mut layer, EntryType::Regular, &path, *mode, bytes)?,
            LayerEntry::Dir { mode, .. } => append(&mut layer, EntryType::Directory, &format!("{path}/"), *mode, &[])?,
            LayerEntry::Symlink { target, .. } => {
                let mut header = header(EntryType::Symlink, 0o777, 0);
                layer
                    .append_link(&mut header, &path, target)
                    .map_err(|source| ImageError::WriteTar {
                        path: path.clone(),
                        source,
                    })?;
            }
        }
    }
    layer.into_inner().map_err(|source| ImageError::WriteTar {
        path: "<end>".to_string(),
        source,
    })
}

/// Splits a path into components, refusing anything that could escape the root or is ambiguous.
fn normalise(path: &str) -> Result<Vec<&str>, ImageError> {
    let invalid = |reason| ImageError::InvalidPath {
        path: path.to_string(),
        reason,
    };
    if path.contains('\0') {
        return Err(invalid("contains NUL"));
    }
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if components.is_empty() {
        return Err(invalid("names the image root"));
    }
    if components.iter().any(|c| *c == "." || *c == "..") {
        return Err(invalid("contains . or .."));
    }
    Ok(components)
}

/// A header with everything that could vary between builds fixed: owner root, epoch mtime, no user names.
fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(EPOCH_SECONDS);
    header
}

fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    kind: EntryType,
    path: &str,
    mode: u32,
    data: &[u8],
) -> Result<(), ImageError> {
    let mut header = header(kind, mode, data.len() as u64);
    builder
        .append_data(&mut header, path, data)
        .map_err(|source| ImageError::WriteTar {
            path: path.to_string(),
            source,
        })
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The image config file. Field order is fixed by these structs (not by a map), so the bytes — and with them the
/// image id — do not depend on serde_json's features.
#[derive(Serialize)]
struct ConfigFile<'a> {
    architecture: &'a str,
    os: &'a str,
    created: &'a str,
    config: ContainerConfig<'a>,
    rootfs: RootFs,
    history: [History<'a>; 1],
}

/// Docker's container config: capitalised keys, as `docker inspect` shows them.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig<'a> {
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    env: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    entrypoint: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    cmd: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    exposed_ports: BTreeMap<&'a str, Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_signal: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
}

/// Serialises as `{}`, the value of each ExposedPorts key.
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: [String; 1],
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
    created_by: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry<'a> {
    config: &'a str,
    repo_tags: [&'a str; 1],
    layers: [&'a str; 1],
}

fn config_json(config: &ImageConfig, layer_hex: &str) -> Result<Vec<u8>, ImageError> {
    let file = ConfigFile {
        architecture: ARCHITECTURE,
        os: "linux",
        created: EPOCH_RFC3339,
        config: ContainerConfig {
            env: &config.env,
            entrypoint: &config.entrypoint,
            cmd: &config.cmd,
            working_dir: config.working_dir.as_deref(),
            exposed_ports: config.exposed_ports.iter().map(|p| (p.as_str(), Empty {})).collect(),
            stop_signal: config.stop_signal.as_deref(),
            labels: &config.labels,
        },
        rootfs: RootFs {
            kind: "layers",
            diff_ids: [format!("sha256:{layer_hex}")],
        },
        history: [History {
            created: EPOCH_RFC3339,
            created_by: "berth-image",
        }],
    };
    serde_json::to_vec(&file).map_err(|source| ImageError::EncodeJson { what: "config", source })
}

#[cfg(test)]
mod tests {
    //! Checks determinism, the manifest and config contents, the id, and the layer's entries.
    use super::*;
    use std::io::Read;

    fn sample_files() -> Vec<LayerEntry> {
        vec![
            LayerEntry::Symlink {
                path: "/bin/sh".into(),
                target: "/app".into(),
            },
            LayerEntry::File {
                path: "/app".into(),
                mode: 0o755,
                bytes: b"#!binary".to_vec(),
            },
            LayerEntry::Dir {
                path: "/tmp".into(),
                mode: 0o1777,
            },
            LayerEntry::File {
                path: "etc/deep/config".into(),
                mode: 0o644,
                bytes: b"x=1\n".to_vec(),
            },
        ]
    }

    fn sample_config() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/app".into()],
            cmd: vec!["serve".into()],
            env: vec!["PATH=/bin".into()],
            exposed_ports: vec!["8080/tcp".into()],
            stop_signal: Some("SIGTERM".into()),
            labels: [("a".to_string(), "b".to_string())].into(),
            ..ImageConfig::default()
        }
    }

    /// The entries of a tar archive as (path, kind, mode, contents or link target).
    fn entries(tar_bytes: &[u8]) -> Vec<(String, EntryType, u32, Vec<u8>)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let header = entry.header().clone();
                assert_eq!(
                    (header.mtime().unwrap(), header.uid().unwrap(), header.gid().unwrap()),
                    (0, 0, 0)
                );
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                if header.entry_type() == EntryType::Symlink {
                    data = entry.link_name_bytes().unwrap().into_owned();
                }
                (path, header.entry_type(), header.mode().unwrap(), data)
            })
            .collect()
    }

    fn file<'a>(tar_bytes: &'a [(String, EntryType, u32, Vec<u8>)], path: &str) -> &'a [u8] {
        &tar_bytes
            .iter()
            .find(|e| e.0 == path)
            .unwrap_or_else(|| panic!("{path} missing"))
            .3
    }

    #[test]
    fn same_input_gives_identical_bytes_whatever_the_entry_order() {
        let a = build_tarball("example/app:1", &sample_files(), &sample_config()).unwrap();
        let mut reversed = sample_files();
        reversed.reverse();
        let b = build_tarball("example/app:1", &reversed, &sample_config()).unwrap();
        assert_eq!(a, b);
        let c = build_tarball("example/app:1", &sample_files(), &ImageConfig::default()).unwrap();
        assert_ne!(a.id, c.id, "a different config is a different image");
    }

    #[test]
    fn id_is_the_sha256_of_the_config_named_by_the_manifest() {
        let image = build_tarball("localhost/example/app:1.0", &sample_files(), &sample_config()).unwrap();
        let outer = entries(&image.bytes);
        let manifest: serde_json::Value = serde_json::from_slice(file(&outer, "manifest.json")).unwrap();
        let config_path = manifest[0]["Config"].as_str().unwrap();
        assert_eq!(
            manifest[0]["RepoTags"],
            serde_json::json!(["localhost/example/app:1.0"])
        );
        let config = file(&outer, config_path);
        assert_eq!(image.id, format!("sha256:{}", sha256_hex(config)));
        assert_eq!(config_path, format!("{}.json", image.id.trim_start_matches("sha256:")));

        let layer_path = manifest[0]["Layers"][0].as_str().unwrap();
        let layer = file(&outer, layer_path);
        let config: serde_json::Value = serde_json::from_slice(config).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"],
            serde_json::json!([format!("sha256:{}", sha256_hex(layer))])
        );
        assert_eq!(layer_path, format!("{}/layer.tar", sha256_hex(layer)));
    }

    #[test]
    fn config_carries_the_runtime_defaults() {
        let image = build_tarball("example/app:1", &sample_files(), &sample_config()).unwrap();
        let outer = entries(&image.bytes);
        let config_path = format!("{}.json", image.id.trim_start_matches("sha256:"));
        let config: serde_json::Value = serde_json::from_slice(file(&outer, &config_path)).unwrap();
        assert_eq!(config["os"], "linux");
        assert_eq!(config["architecture"], ARCHITECTURE);
        assert_eq!(
            config["config"],
            serde_json::json!({
                "Env": ["PATH=/bin"],
                "Entrypoint": ["/app"],
                "Cmd": ["serve"],
                "ExposedPorts": {"8080/tcp": {}},
                "StopSignal": "SIGTERM",
                "Labels": {"a": "b"},
            })
        );
        assert_eq!(config["history"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn layer_is_sorted_with_implicit_parents_and_exact_modes() {
        let image = build_tarball("example/app:1", &sample_files(), &sample_config()).unwrap();
        let outer = entries(&image.bytes);
        let layer_path = outer.iter().find(|e| e.0.ends_with("/layer.tar")).unwrap().0.clone();
        let layer = entries(file(&outer, &layer_path));
        let summary: Vec<(&str, EntryType, u32)> = layer.iter().map(|e| (e.0.as_str(), e.1, e.2)).collect();
        assert_eq!(
            summary,
            vec![
                ("app", EntryType::Regular, 0o755),
                ("bin/", EntryType::Directory, 0o755),
                ("bin/sh", EntryType::Symlink, 0o777),
                ("etc/", EntryType::Directory, 0o755),
                ("etc/deep/", EntryType::Directory, 0o755),
                ("etc/deep/config", EntryType::Regular, 0o644),
                ("tmp/", EntryType::Directory, 0o1777),
            ]
        );
        assert_eq!(file(&layer, "bin/sh"), b"/app");
        assert_eq!(file(&layer, "app"), b"#!binary");
    }

    #[test]
    fn bad_paths_and_references_are_rejected() {
        let config = ImageConfig::default();
        let dir = |path: &str| LayerEntry::Dir {
            path: path.into(),
            mode: 0o755,
        };
        for bad in ["/", "", "a/../b", "./a", "a\0b"] {
            let err = build_tarball("a:1", &[dir(bad)], &config).unwrap_err();
            assert!(matches!(err, ImageError::InvalidPath { .. }), "{bad:?}: {err}");
        }
        let err = build_tarball("a:1", &[dir("/x"), dir("x/")], &config).unwrap_err();
        assert!(matches!(err, ImageError::DuplicatePath { .. }), "{err}");
        let files = [
            LayerEntry::File {
                path: "f".into(),
                mode: 0o644,
                bytes: vec![],
            },
            dir("f/g"),
        ];
        let err = build_tarball("a:1", &files, &config).unwrap_err();
        assert!(matches!(err, ImageError::ParentNotDirectory { .. }), "{err}");
        for bad in [
            "app",
            "App:1",
            "app:",
            "app:-x",
            "localhost:5000/app",
            "app@sha256:00",
            "/app:1",
        ] {
            let err = build_tarball(bad, &[], &config).unwrap_err();
            assert!(matches!(err, ImageError::InvalidReference { .. }), "{bad:?}: {err}");
        }
        assert!(build_tarball("localhost:5000/app:v1.2_3", &[], &config).is_ok());
    }
}
