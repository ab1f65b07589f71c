//! Host-side contents of a pod's volumes: the files of `configMap` and `secret` volumes and the directories of
//! `emptyDir` volumes, which the agent then bind-mounts into containers.
//!
//! ConfigMap and Secret files are written the way the kubelet's atomic writer does it (kubernetes/kubernetes
//! `pkg/volume/util/atomic_writer.go`), so an update is seen by the containers all at once and applications that
//! watch the `..data` link (many do, with inotify) notice it:
//!
//! ```text
//! <volume>/..2026_01_31_12_00_00.4185920374/   the payload, one fresh hidden directory per version
//! <volume>/..data -> ..2026_01_31_12_00_00.4185920374   swapped atomically (a new link renamed over it)
//! <volume>/config.yaml -> ..data/config.yaml   user-visible names, relative links through ..data
//! ```
//!
//! This file does not fetch ConfigMaps or Secrets, watch them, or mount anything: the agent passes the objects in
//! and decides when to rewrite. Its functions do blocking file I/O; call them from `spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, KeyToPath, Secret, SecretVolumeSource};

/// The mode of projected files when the volume gives no `defaultMode` (upstream's
/// `ConfigMapVolumeSourceDefaultMode` and `SecretVolumeSourceDefaultMode`).
pub const DEFAULT_MODE: u32 = 0o644;

/// The link that points at the current payload directory.
const DATA_DIR_NAME: &str = "..data";
/// The link created next to `..data` and renamed over it.
const NEW_DATA_DIR_NAME: &str = "..data_tmp";

/// Upstream's limits on projected paths.
const MAX_FILE_NAME_LENGTH: usize = 255;
const MAX_PATH_LENGTH: usize = 4096;

/// The files of a volume: relative path → content and mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    pub files: BTreeMap<String, FileProjection>,
}

/// One projected file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    /// Permission bits (`0o644`); only the low nine bits and setuid/setgid/sticky are used.
    pub mode: u32,
}

/// Why a volume could not be prepared. The messages follow the kubelet's where users see them in events
/// (`MountVolume.SetUp failed for volume "config" : configmap "app" not found`).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The referenced ConfigMap does not exist and the volume is not optional.
    #[error("configmap {name:?} not found")]
    ConfigMapNotFound { name: String },
    /// The referenced Secret does not exist and the volume is not optional.
    #[error("secret {name:?} not found")]
    SecretNotFound { name: String },
    /// An item names a key the ConfigMap lacks, and the volume is not optional.
    #[error("configmap references non-existent config key: {key}")]
    MissingConfigMapKey { key: String },
    /// An item names a key the Secret lacks, and the volume is not optional.
    #[error("references non-existent secret key: {key}")]
    MissingSecretKey { key: String },
    /// A payload path is absolute, contains `..`, starts with `..` or is too long.
    #[error("invalid path: {reason}: {path:?}")]
    InvalidPath { path: String, reason: &'static str },
    /// A file system operation failed.
    #[error("{operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The payload of a `configMap` volume: every key of `data` and `binaryData` (or only the `items`), with
/// `defaultMode` or the item's own mode.
///
/// `cm` is the ConfigMap if it exists. A missing ConfigMap is an error unless the volume is `optional`, in which
/// case the volume is empty; an item whose key is missing is an error unless the volume is `optional`, in which case
/// the item is skipped. This is the kubelet's configmap volume plugin behaviour.
pub fn configmap_payload(source: &ConfigMapVolumeSource, cm: Option<&ConfigMap>) -> Result<Payload, VolumeError> {
    let optional = source.optional.unwrap_or(false);
    let Some(cm) = cm else {
        return if optional {
            Ok(Payload::default())
        } else {
            Err(VolumeError::ConfigMapNotFound {
                name: source.name.clone(),
            })
        };
    };
    let mut all: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for (key, value) in cm.data.iter().flatten() {
        all.insert(key, value.as_bytes().to_vec());
    }
    for (key, value) in cm.binary_data.iter().flatten() {
        all.insert(key, value.0.clone());
    }
    make_payload(&all, source.items.as_deref(), source.default_mode, optional, |key| {
        VolumeError::MissingConfigMapKey { key }
    })
}

/// The payload of a `secret` volume: every key of `data` (or only the `items`), with `defaultMode` or the item's own
/// mode. A missing Secret or key is handled as for [`configmap_payload`].
///
/// `stringData` is not read: the API server folds it into `data` on write, so a stored Secret never has it.
pub fn secret_payload(source: &SecretVolumeSource, secret: Option<&Secret>) -> Result<Payload, VolumeError> {
    let optional = source.optional.unwrap_or(false);
    let Some(secret) = secret else {
        return if optional {
            Ok(Payload::default())
        } else {
            Err(VolumeError::SecretNotFound {
                name: source.secret_name.clone().unwrap_or_default(),
            })
        };
    };
    let all: BTreeMap<&str, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key.as_str(), value.0.clone()))
        .collect();
    make_payload(&all, source.items.as_deref(), source.default_mode, optional, |key| {
        VolumeError::MissingSecretKey { key }
    })
}

fn make_payload(
    all: &BTreeMap<&str, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
    missing: impl Fn(String) -> VolumeError,
) -> Result<Payload, VolumeError> {
    let default_mode = default_mode.map_or(DEFAULT_MODE, mode_bits);
    let mut payload = Payload::default();
    match items {
        // An empty items list means "all keys", as upstream treats it.
        None | Some([]) => {
            for (key, data) in all {
                payload.files.insert(
                    (*key).to_string(),
                    FileProjection {
                        data: data.clone(),
                        mode: default_mode,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(data) = all.get(item.key.as_str()) else {
                    if optional {
                        continue;
                    }
                    return Err(missing(item.key.clone()));
                };
                let mode = item.mode.map_or(default_mode, mode_bits);
                payload.files.insert(
                    item.path.clone(),
                    FileProjection {
                        data: data.clone(),
                        mode,
                    },
                );
            }
        }
    }
    Ok(payload)
}

/// A mode from the API (an int32 holding octal bits) as file permission bits.
fn mode_bits(mode: i32) -> u32 {
    u32::try_from(mode).unwrap_or(DEFAULT_MODE) & 0o7777
}

/// Creates an `emptyDir` volume's directory (and its parents), world-writable like upstream's (`0777`), so
/// containers running as any user can write to it. An existing directory is left as it is.
pub fn empty_dir(path: &Path) -> Result<(), VolumeError> {
    if path.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(path).map_err(io_err("create directory", path))?;
    // Set explicitly: the process umask would otherwise strip group and other write bits.
    fs::set_permissions(path, fs::Permissions::from_mode(0o777)).map_err(io_err("set permissions of", path))
}

/// Projects `payload` into `target_dir` atomically (see the file's documentation for the layout) and returns whether
/// anything changed: an identical payload — same paths, contents and modes — writes nothing and returns `false`.
///
/// The target directory is created if missing. Paths in the payload must be relative, must not contain a `..`
/// component and must not start with `..` (those names are the writer's own); an invalid path rejects the whole
/// payload before anything is written. Like upstream, the writer is not safe against concurrent writers to the same
/// directory: the caller serialises writes per volume.
pub fn write_atomic(target_dir: &Path, payload: &Payload) -> Result<bool, VolumeError> {
    for path in payload.files.keys() {
        validate_path(path)?;
    }
    // Normalise `a//b` and `./a` so comparisons with what is on disk are exact.
    let files: BTreeMap<String, &FileProjection> = payload
        .files
        .iter()
        .map(|(path, file)| (clean_path(path), file))
        .collect();

    fs::create_dir_all(target_dir).map_err(io_err("create directory", target_dir))?;
    let data_link = target_dir.join(DATA_DIR_NAME);
    let old_ts_name = match fs::read_link(&data_link) {
        Ok(name) => Some(name),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => return Err(io_err("read link", &data_link)(err)),
    };
    let new_top: BTreeSet<String> = files.keys().map(|p| top_component(p).to_string()).collect();

    if let Some(old) = &old_ts_name {
        let old_dir = target_dir.join(old);
        if payload_matches(&old_dir, &files)? && visible_links_exist(target_dir, &new_top) {
            return Ok(false);
        }
    }

    // Write the new version beside the old one.
    let ts_dir = new_timestamp_dir(target_dir)?;
    let ts_name = ts_dir.file_name().map(PathBuf::from).unwrap_or_default();
    if let Err(err) = write_payload(&ts_dir, &files) {
        let _ = fs::remove_dir_all(&ts_dir);
        return Err(err);
    }

    // User-visible links go through ..data, so they can be created before the switch: until then they point at
    // the old version (or dangle, for names the old version lacked).
    for name in &new_top {
        let visible = target_dir.join(name);
        match fs::symlink_metadata(&visible) {
            Ok(meta) if meta.file_type().is_symlink() => continue,
            Ok(_) => return Err(io_err("replace", &visible)(io::Error::other("not a symlink"))),
            Err(_) => {
                symlink(Path::new(DATA_DIR_NAME).join(name), &visible).map_err(io_err("create link", &visible))?
            }
        }
    }

    // The switch: a new link renamed over ..data (rename(2) replaces it atomically).
    let new_link = target_dir.join(NEW_DATA_DIR_NAME);
    let _ = fs::remove_file(&new_link); // a leftover from an interrupted write
    if let Err(err) = symlink(&ts_name, &new_link) {
        let _ = fs::remove_dir_all(&ts_dir);
        return Err(io_err("create link", &new_link)(err));
    }
    if let Err(err) = fs::rename(&new_link, &data_link) {
        let _ = fs::remove_file(&new_link);
        let _ = fs::remove_dir_all(&ts_dir);
        return Err(io_err("rename link", &new_link)(err));
    }

    remove_stale_entries(target_dir, &ts_name, &new_top)?;
    Ok(true)
}

/// Upstream's path rules for projected files (`validatePath`).
fn validate_path(path: &str) -> Result<(), VolumeError> {
    let invalid = |reason| {
        Err(VolumeError::InvalidPath {
            path: path.to_string(),
            reason,
        })
    };
    if path.is_empty() {
        return invalid("must not be empty");
    }
    if path.starts_with('/') {
        return invalid("must be relative path");
    }
    if path.len() > MAX_PATH_LENGTH {
        return invalid("must be less than or equal to 4096 characters");
    }
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        if *part == ".." {
            return invalid("must not contain '..'");
        }
        if part.len() > MAX_FILE_NAME_LENGTH {
            return invalid("filenames must be less than or equal to 255 characters");
        }
    }
    if parts[0].starts_with("..") {
        return invalid("must not start with '..'");
    }
    if clean_path(path).is_empty() {
        return invalid("must not be empty");
    }
    Ok(())
}

/// `path` without empty and `.` components.
fn clean_path(path: &str) -> String {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn top_component(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// Whether the payload directory holds exactly `files` (same set of regular files, contents and modes).
fn payload_matches(dir: &Path, files: &BTreeMap<String, &FileProjection>) -> Result<bool, VolumeError> {
    let mut on_disk = BTreeMap::new();
    match collect_files(dir, dir, &mut on_disk) {
        Ok(()) => {}
        // A dangling ..data (its directory removed by hand) simply means "rewrite".
        Err(VolumeError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err),
    }
    if on_disk.len() != files.len() {
        return Ok(false);
    }
    for (path, file) in files {
        let Some(disk_path) = on_disk.get(path) else {
            return Ok(false);
        };
        let meta = fs::metadata(disk_path).map_err(io_err("stat", disk_path))?;
        if meta.permissions().mode() & 0o7777 != file.mode {
            return Ok(false);
        }
        let content = fs::read(disk_path).map_err(io_err("read", disk_path))?;
        if content != file.data {
            return Ok(false);
        }
    }
    Ok(true)
}

fn collect_files(root: &Path, dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> Result<(), VolumeError> {
    for entry in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
        let entry = entry.map_err(io_err("read directory", dir))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_err("stat", &path))?;
        if file_type.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            let relative = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
            out.insert(relative, path);
        }
    }
    Ok(())
}

fn visible_links_exist(target_dir: &Path, names: &BTreeSet<String>) -> bool {
    names
        .iter()
        .all(|name| fs::symlink_metadata(target_dir.join(name)).is_ok_and(|m| m.file_type().is_symlink()))
}

/// Creates `..<UTC timestamp>.<random digits>` (upstream's naming), mode 0755 so any container user can traverse it.
fn new_timestamp_dir(target_dir: &Path) -> Result<PathBuf, VolumeError> {
    let stamp = chrono::Utc::now().format("..%Y_%m_%d_%H_%M_%S");
    loop {
        let dir = target_dir.join(format!("{stamp}.{}", rand::random::<u32>()));
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                    .map_err(io_err("set permissions of", &dir))?;
                return Ok(dir);
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(io_err("create directory", &dir)(err)),
        }
    }
}

fn write_payload(dir: &Path, files: &BTreeMap<String, &FileProjection>) -> Result<(), VolumeError> {
    for (path, file) in files {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
        }
        fs::write(&full, &file.data).map_err(io_err("write", &full))?;
        // Set explicitly: creating the file applies the umask to the mode.
        fs::set_permissions(&full, fs::Permissions::from_mode(file.mode))
            .map_err(io_err("set permissions of", &full))?;
    }
    Ok(())
}

/// Removes what the new version no longer needs: user-visible links for names the payload dropped, and every hidden
/// `..` payload directory but the current one (the previous version, and leftovers of interrupted writes).
fn remove_stale_entries(target_dir: &Path, current: &Path, keep: &BTreeSet<String>) -> Result<(), VolumeError> {
    for entry in fs::read_dir(target_dir).map_err(io_err("read directory", target_dir))? {
        let entry = entry.map_err(io_err("read directory", target_dir))?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_err("stat", &path))?;
        if name_str == DATA_DIR_NAME || Path::new(&name) == current {
            continue;
        }
        if name_str.starts_with("..") {
            if file_type.is_dir() {
                fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
            }
        } else if file_type.is_symlink() && !keep.contains(name_str.as_ref()) {
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
        }
    }
    Ok(())
}

fn io_err(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::Io {
        operation,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    //! The atomic writer's layout and updates, and the ConfigMap/Secret payload rules, on a temporary directory.

    use super::*;
    use k8s_openapi::ByteString;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        Payload {
            files: files
                .iter()
                .map(|(p, d, m)| {
                    (
                        p.to_string(),
                        FileProjection {
                            data: d.as_bytes().to_vec(),
                            mode: *m,
                        },
                    )
                })
                .collect(),
        }
    }

    fn hidden_dirs(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn first_write_creates_the_data_link_timestamped_dir_and_relative_links() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let changed = write_atomic(&dir, &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o600)])).unwrap();
        assert!(changed);

        let data = fs::read_link(dir.join("..data")).unwrap();
        let data = data.to_str().unwrap();
        assert!(data.starts_with(".."), "{data}");
        assert_eq!(hidden_dirs(&dir), vec![data.to_string()]);
        assert_eq!(mode_of(&dir.join(data)), 0o755);
        assert_eq!(fs::read_link(dir.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(fs::read_link(dir.join("sub")).unwrap(), Path::new("..data/sub"));
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert_eq!(mode_of(&dir.join("a")), 0o644);
        assert_eq!(mode_of(&dir.join("sub/b")), 0o600);
    }

    #[test]
    fn an_unchanged_payload_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let p = payload(&[("a", "1", 0o644)]);
        assert!(write_atomic(tmp.path(), &p).unwrap());
        let before = fs::read_link(tmp.path().join("..data")).unwrap();
        assert!(!write_atomic(tmp.path(), &p).unwrap());
        assert_eq!(fs::read_link(tmp.path().join("..data")).unwrap(), before);
    }

    #[test]
    fn an_update_switches_data_and_removes_the_old_version_and_dropped_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write_atomic(dir, &payload(&[("a", "1", 0o644), ("gone", "x", 0o644)])).unwrap();
        let old = fs::read_link(dir.join("..data")).unwrap();

        assert!(write_atomic(dir, &payload(&[("a", "2", 0o644), ("new", "y", 0o644)])).unwrap());
        let new = fs::read_link(dir.join("..data")).unwrap();
        assert_ne!(old, new);
        assert_eq!(hidden_dirs(dir), vec![new.to_string_lossy().into_owned()]);
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "2");
        assert_eq!(fs::read_to_string(dir.join("new")).unwrap(), "y");
        assert!(fs::symlink_metadata(dir.join("gone")).is_err());
        assert!(fs::symlink_metadata(dir.join("..data_tmp")).is_err());
    }

    #[test]
    fn a_mode_change_alone_is_an_update() {
        let tmp = tempfile::tempdir().unwrap();
        write_atomic(tmp.path(), &payload(&[("a", "1", 0o644)])).unwrap();
        assert!(write_atomic(tmp.path(), &payload(&[("a", "1", 0o400)])).unwrap());
        assert_eq!(mode_of(&tmp.path().join("a")), 0o400);
    }

    #[test]
    fn an_empty_payload_leaves_only_the_data_link() {
        let tmp = tempfile::tempdir().unwrap();
        write_atomic(tmp.path(), &payload(&[("a", "1", 0o644)])).unwrap();
        assert!(write_atomic(tmp.path(), &Payload::default()).unwrap());
        let names: BTreeSet<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}"); // ..data and its (empty) payload directory
        assert!(names.contains("..data"));
    }

    #[test]
    fn leftovers_of_an_interrupted_write_are_cleaned_up() {
        let tmp = tempfile::tempdir().unwrap();
        write_atomic(tmp.path(), &payload(&[("a", "1", 0o644)])).unwrap();
        fs::create_dir(tmp.path().join("..2001_01_01_00_00_00.1")).unwrap();
        symlink("nowhere", tmp.path().join("..data_tmp")).unwrap();
        write_atomic(tmp.path(), &payload(&[("a", "2", 0o644)])).unwrap();
        assert_eq!(hidden_dirs(tmp.path()).len(), 1);
        assert!(fs::symlink_metadata(tmp.path().join("..data_tmp")).is_err());
    }

    #[test]
    fn invalid_paths_are_rejected_before_anything_is_written() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "..hidden",
            "",
            "a/..",
            &"x".repeat(256),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let err = write_atomic(tmp.path(), &payload(&[("ok", "1", 0o644), (bad, "2", 0o644)])).unwrap_err();
            assert!(matches!(err, VolumeError::InvalidPath { .. }), "{bad}: {err}");
            assert!(
                fs::read_dir(tmp.path()).unwrap().next().is_none(),
                "{bad}: something was written"
            );
        }
    }

    fn configmap(data: &[(&str, &str)], binary: &[(&str, &[u8])]) -> ConfigMap {
        ConfigMap {
            data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            binary_data: Some(
                binary
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
        }
    }

    #[test]
    fn configmap_projects_data_and_binary_data_with_the_default_mode() {
        let cm = configmap(&[("a", "text")], &[("b", &[0, 1, 2])]);
        let source = ConfigMapVolumeSource {
            name: "cm".into(),
            ..Default::default()
        };
        let p = configmap_payload(&source, Some(&cm)).unwrap();
        assert_eq!(
            p.files["a"],
            FileProjection {
                data: b"text".to_vec(),
                mode: 0o644
            }
        );
        assert_eq!(
            p.files["b"],
            FileProjection {
                data: vec![0, 1, 2],
                mode: 0o644
            }
        );
    }

    #[test]
    fn items_select_keys_rename_them_and_set_modes() {
        let cm = configmap(&[("a", "1"), ("b", "2")], &[]);
        let source = ConfigMapVolumeSource {
            name: "cm".into(),
            default_mode: Some(0o440),
            items: Some(vec![item("a", "dir/x", None), item("b", "y", Some(0o400))]),
            ..Default::default()
        };
        let p = configmap_payload(&source, Some(&cm)).unwrap();
        assert_eq!(p.files.len(), 2);
        assert_eq!(
            p.files["dir/x"],
            FileProjection {
                data: b"1".to_vec(),
                mode: 0o440
            }
        );
        assert_eq!(
            p.files["y"],
            FileProjection {
                data: b"2".to_vec(),
                mode: 0o400
            }
        );
    }

    #[test]
    fn a_missing_configmap_fails_unless_optional() {
        let source = ConfigMapVolumeSource {
            name: "x".into(),
            ..Default::default()
        };
        let err = configmap_payload(&source, None).unwrap_err();
        assert_eq!(err.to_string(), r#"configmap "x" not found"#);
        let optional = ConfigMapVolumeSource {
            optional: Some(true),
            ..source
        };
        assert_eq!(configmap_payload(&optional, None).unwrap(), Payload::default());
    }

    #[test]
    fn a_missing_item_key_fails_unless_optional() {
        let cm = configmap(&[("a", "1")], &[]);
        let source = ConfigMapVolumeSource {
            name: "cm".into(),
            items: Some(vec![item("a", "a", None), item("nope", "n", None)]),
            ..Default::default()
        };
        let err = configmap_payload(&source, Some(&cm)).unwrap_err();
        assert_eq!(err.to_string(), "configmap references non-existent config key: nope");
        let optional = ConfigMapVolumeSource {
            optional: Some(true),
            ..source
        };
        assert_eq!(configmap_payload(&optional, Some(&cm)).unwrap().files.len(), 1);
    }

    #[test]
    fn secrets_project_their_bytes_and_report_missing_objects_and_keys() {
        let secret = Secret {
            data: Some([("token".to_string(), ByteString(b"s3cr3t".to_vec()))].into()),
            ..Default::default()
        };
        let source = SecretVolumeSource {
            secret_name: Some("s".into()),
            default_mode: Some(0o400),
            ..Default::default()
        };
        let p = secret_payload(&source, Some(&secret)).unwrap();
        assert_eq!(
            p.files["token"],
            FileProjection {
                data: b"s3cr3t".to_vec(),
                mode: 0o400
            }
        );

        assert_eq!(
            secret_payload(&source, None).unwrap_err().to_string(),
            r#"secret "s" not found"#
        );
        let with_item = SecretVolumeSource {
            items: Some(vec![item("nope", "n", None)]),
            ..source
        };
        assert_eq!(
            secret_payload(&with_item, Some(&secret)).unwrap_err().to_string(),
            "references non-existent secret key: nope"
        );
    }

    #[test]
    fn empty_dir_is_created_world_writable() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pods/uid/volumes/cache");
        empty_dir(&dir).unwrap();
        assert!(dir.is_dir());
        assert_eq!(mode_of(&dir), 0o777);
        empty_dir(&dir).unwrap();
    }
}
