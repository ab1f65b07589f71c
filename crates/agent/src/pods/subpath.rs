//! Safe `subPath` mounts: the part of a volume a container mounts is opened beneath the volume's directory without
//! following any symlink out of it, and what was opened is bind-mounted onto an agent-owned path that Docker is
//! then given. Docker never sees a path inside the volume, so it cannot be tricked into resolving one.
//!
//! Why this exists (CVE-2017-1002101 upstream): a container can write a symlink into a shared volume
//! (`ln -s / /vol/escape`). Had the agent handed Docker `<volume>/escape` for `subPath: escape`, Docker would have
//! followed the link and mounted the host's `/` into the next container. The kubelet's answer, reproduced here:
//! open every component beneath the volume root (`openat2` with `RESOLVE_BENEATH`, so absolute symlinks and `..`
//! that would leave the volume fail with `EXDEV`, while relative links that stay inside it, such as the `..data`
//! links of configMap and secret volumes, still work), then bind-mount `/proc/self/fd/N` — the opened file itself,
//! not a path resolved again later — onto `<pod dir>/volume-subpaths/<volume>/<container>/<mount index>`.
//!
//! This module does the filesystem work only; deciding which mounts need it (and expanding `subPathExpr`) is
//! [`super::spec`]'s, and calling it at the right time is the worker's. It needs `CAP_SYS_ADMIN` in the mount
//! namespace dockerd uses (the agent runs as root beside dockerd); without it a subPath mount is refused, never
//! done the unsafe way.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::UnmountFlags;

/// The directory under a pod's directory that holds the subPath mount targets.
pub const SUBPATHS_DIR: &str = "volume-subpaths";

/// How many mounts stacked on one target are taken off before giving up (a target should hold one; more means
/// an earlier run was interrupted between mounting and recording, which a few iterations undo).
const MAX_STACKED_MOUNTS: usize = 8;

/// Why a subPath could not be prepared. The messages are shown to the pod's owner, so they name the subPath but
/// never a host path (upstream hides host paths for the same reason).
#[derive(Debug, thiserror::Error)]
pub enum SubPathError {
    /// The path, or a symlink met on the way, leads out of the volume.
    #[error("subPath {0:?} resolves outside its volume (a symlink or '..' leaves the volume)")]
    Outside(String),
    /// The bind mount was refused: the agent lacks the privilege to mount.
    #[error(
        "mounting subPath {0:?} needs the agent to run as root (CAP_SYS_ADMIN); berth refuses to mount an \
         unchecked path instead"
    )]
    NotPermitted(String),
    /// The kernel has no `openat2` (Linux older than 5.6), so the safe resolution is not possible.
    #[error("subPath {0:?} cannot be resolved safely: the kernel lacks openat2 (Linux 5.6 or later is needed)")]
    Unsupported(String),
    /// Any other failure of a step, with the step named.
    #[error("subPath {sub_path:?}: {step} failed: {source}")]
    Io {
        sub_path: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Where the subPath target of mount `index` of `container` for `volume` lives under `pod_dir`.
pub fn target_path(pod_dir: &Path, volume: &str, container: &str, index: usize) -> PathBuf {
    pod_dir
        .join(SUBPATHS_DIR)
        .join(volume)
        .join(container)
        .join(index.to_string())
}

/// Opens `sub_path` beneath `volume_root` (creating it as a directory if it does not exist, as the kubelet does)
/// and bind-mounts it onto `target`, replacing whatever was mounted there. Idempotent: a second call (a container
/// restart, an agent restart) unmounts the old mount and mounts the path as it resolves now.
pub fn mount(volume_root: &Path, sub_path: &str, target: &Path) -> Result<(), SubPathError> {
    let io_err = |step: &'static str| {
        move |source: io::Error| SubPathError::Io {
            sub_path: sub_path.to_string(),
            step,
            source,
        }
    };
    let opened = open_beneath(volume_root, sub_path)?;
    let is_dir = FileType::from_raw_mode(
        rustix::fs::fstat(&opened)
            .map_err(|e| io_err("stat")(e.into()))?
            .st_mode,
    ) == FileType::Directory;
    prepare_target(target, is_dir).map_err(io_err("preparing the mount target"))?;
    // The magic link names the open file itself: the kernel mounts the inode the descriptor holds, whatever has
    // happened to the path since. This is what makes the check above race-free.
    let source = format!("/proc/self/fd/{}", opened.as_raw_fd());
    match rustix::mount::mount_bind(source.as_str(), target) {
        Ok(()) => Ok(()),
        Err(Errno::PERM | Errno::ACCESS) => Err(SubPathError::NotPermitted(sub_path.to_string())),
        Err(e) => Err(io_err("bind mount")(e.into())),
    }
}

/// Opens `sub_path` beneath `root` with `O_PATH`, creating missing directories beneath the root first. Symlinks
/// are followed only while they stay inside the root; `/proc` magic links are never followed.
pub fn open_beneath(root: &Path, sub_path: &str) -> Result<OwnedFd, SubPathError> {
    let fail = |step: &'static str, e: Errno| classify(sub_path, step, e);
    // The volume root itself is an agent-made directory; O_NOFOLLOW still refuses a symlink in its place.
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail("opening the volume", e))?;
    if sub_path.split('/').any(|part| part == "..") || sub_path.starts_with('/') {
        return Err(SubPathError::Outside(sub_path.to_string()));
    }
    match resolve(&root_fd, sub_path, OFlags::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOENT) => {
            make_dirs(&root_fd, sub_path).map_err(|e| fail("creating the subPath directory", e))?;
            resolve(&root_fd, sub_path, OFlags::empty()).map_err(|e| fail("opening", e))
        }
        Err(e) => Err(fail("opening", e)),
    }
}

/// `openat2(root, path, O_PATH, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`.
fn resolve(root: &OwnedFd, path: &str, extra: OFlags) -> Result<OwnedFd, Errno> {
    let path = if path.is_empty() { "." } else { path };
    rustix::fs::openat2(
        root,
        path,
        OFlags::PATH | OFlags::CLOEXEC | extra,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
}

/// Creates each missing directory of `sub_path` beneath `root`, one component at a time: every parent is opened
/// beneath the root, and `mkdirat` never follows a symlink in the name it creates, so a link planted between two
/// steps cannot redirect a creation out of the volume. New directories get the volume root's mode, as upstream
/// does (so a group-writable emptyDir stays group-writable below the subPath).
fn make_dirs(root: &OwnedFd, sub_path: &str) -> Result<(), Errno> {
    let mode = Mode::from_raw_mode(rustix::fs::fstat(root)?.st_mode & 0o7777);
    let parts: Vec<&str> = sub_path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    let mut parent: Option<OwnedFd> = None;
    for i in 0..parts.len() {
        let prefix = parts[..=i].join("/");
        let dir = match resolve(root, &prefix, OFlags::DIRECTORY) {
            Ok(dir) => dir,
            Err(Errno::NOENT) => {
                let at = parent.as_ref().map_or(root.as_fd(), |p| p.as_fd());
                match rustix::fs::mkdirat(at, parts[i], mode) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e),
                }
                resolve(root, &prefix, OFlags::DIRECTORY)?
            }
            Err(e) => return Err(e),
        };
        parent = Some(dir);
    }
    Ok(())
}

fn classify(sub_path: &str, step: &'static str, e: Errno) -> SubPathError {
    match e {
        // EXDEV: resolution would leave the root. ELOOP: a magic link, or a symlink chain too long to be honest.
        Errno::XDEV | Errno::LOOP => SubPathError::Outside(sub_path.to_string()),
        Errno::NOSYS => SubPathError::Unsupported(sub_path.to_string()),
        e => SubPathError::Io {
            sub_path: sub_path.to_string(),
            step,
            source: e.into(),
        },
    }
}

/// Makes `target` an empty directory (or empty file) with nothing mounted on it, ready for a bind mount.
fn prepare_target(target: &Path, is_dir: bool) -> io::Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    unmount_all(target)?;
    match std::fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() == is_dir && !meta.file_type().is_symlink() => return Ok(()),
        // The subPath changed type (or something odd is there): start afresh. `remove_dir` only removes an empty
        // directory, and nothing is mounted here any more, so no volume content can be touched.
        Ok(meta) if meta.is_dir() => std::fs::remove_dir(target)?,
        Ok(_) => std::fs::remove_file(target)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if is_dir {
        std::fs::create_dir(target)
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(target)
            .map(drop)
    }
}

/// Takes every mount off `path` (lazily, so a container still holding one does not block the agent). `EINVAL`
/// means nothing (more) is mounted there.
fn unmount_all(path: &Path) -> io::Result<()> {
    for _ in 0..MAX_STACKED_MOUNTS {
        match rustix::mount::unmount(path, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
            Ok(()) => continue,
            Err(Errno::INVAL | Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other(format!(
        "more than {MAX_STACKED_MOUNTS} mounts stacked on {}",
        path.display()
    )))
}

/// Unmounts and removes every subPath target under `pod_dir`. Nothing is removed recursively: each target is
/// unmounted first and then removed only if it is an empty directory or a file, so a mount that would not come
/// off makes this fail instead of deleting the volume (or host) content behind it. The caller must not remove
/// the pod directory recursively unless this succeeded.
pub fn clean(pod_dir: &Path) -> io::Result<()> {
    let root = pod_dir.join(SUBPATHS_DIR);
    let volumes = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for volume in volumes {
        let volume = volume?.path();
        for container in std::fs::read_dir(&volume)? {
            let container = container?.path();
            for target in std::fs::read_dir(&container)? {
                let target = target?.path();
                unmount_all(&target)?;
                if std::fs::symlink_metadata(&target)?.is_dir() {
                    std::fs::remove_dir(&target)?;
                } else {
                    std::fs::remove_file(&target)?;
                }
            }
            std::fs::remove_dir(&container)?;
        }
        std::fs::remove_dir(&volume)?;
    }
    std::fs::remove_dir(&root)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A volume directory with a configMap-style layout (`key -> ..data/key`, `..data -> ..2024`), a subdirectory,
    /// and the symlinks an attacker would plant.
    fn volume() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path();
        std::fs::create_dir(v.join("..2024")).unwrap();
        std::fs::write(v.join("..2024/app.yaml"), "port: 80\n").unwrap();
        symlink("..2024", v.join("..data")).unwrap();
        symlink("..data/app.yaml", v.join("app.yaml")).unwrap();
        std::fs::create_dir(v.join("sub")).unwrap();
        std::fs::write(v.join("sub/file"), "inside").unwrap();
        symlink("/", v.join("escape")).unwrap();
        symlink("../../../../../../..", v.join("up")).unwrap();
        symlink("/proc/self/root", v.join("magic")).unwrap();
        symlink("sub/../../..", v.join("sneaky")).unwrap();
        symlink("sub", v.join("inner")).unwrap();
        dir
    }

    fn read(fd: &OwnedFd) -> String {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn symlinks_that_stay_inside_the_volume_resolve() {
        let v = volume();
        assert_eq!(read(&open_beneath(v.path(), "app.yaml").unwrap()), "port: 80\n");
        assert_eq!(read(&open_beneath(v.path(), "inner/file").unwrap()), "inside");
        assert_eq!(read(&open_beneath(v.path(), "./sub//file").unwrap()), "inside");
    }

    #[test]
    fn symlinks_and_dot_dots_that_leave_the_volume_are_refused() {
        let v = volume();
        for sub_path in [
            "escape",
            "escape/etc",
            "up",
            "up/etc/hostname",
            "magic",
            "magic/etc",
            "sneaky",
            "../x",
            "sub/../../x",
            "/etc",
        ] {
            let err = open_beneath(v.path(), sub_path).unwrap_err();
            assert!(matches!(err, SubPathError::Outside(_)), "{sub_path}: {err}");
            assert!(err.to_string().contains("resolves outside its volume"), "{err}");
        }
    }

    #[test]
    fn a_missing_sub_path_is_created_as_a_directory_beneath_the_volume_only() {
        let v = volume();
        open_beneath(v.path(), "logs/web-1").unwrap();
        assert!(v.path().join("logs/web-1").is_dir());
        // Creating through a link that leaves the volume must create nothing outside it.
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), v.path().join("away")).unwrap();
        let err = open_beneath(v.path(), "away/created").unwrap_err();
        assert!(matches!(err, SubPathError::Outside(_)), "{err}");
        assert!(!outside.path().join("created").exists());
    }

    /// Needs root (CAP_SYS_ADMIN), as the agent does; the suite runs as root beside Docker.
    #[test]
    fn mount_binds_what_was_opened_and_clean_takes_it_off() {
        let v = volume();
        let pod = tempfile::tempdir().unwrap();
        let file_target = target_path(pod.path(), "cfg", "app", 0);
        let dir_target = target_path(pod.path(), "data", "app", 1);
        mount(v.path(), "app.yaml", &file_target).unwrap();
        mount(v.path(), "sub", &dir_target).unwrap();
        // Idempotent: a second mount replaces the first rather than stacking on it.
        mount(v.path(), "sub", &dir_target).unwrap();
        assert_eq!(std::fs::read_to_string(&file_target).unwrap(), "port: 80\n");
        assert_eq!(std::fs::read_to_string(dir_target.join("file")).unwrap(), "inside");
        let err = mount(v.path(), "escape", &target_path(pod.path(), "data", "app", 2)).unwrap_err();
        assert!(matches!(err, SubPathError::Outside(_)), "{err}");

        clean(pod.path()).unwrap();
        assert!(!pod.path().join(SUBPATHS_DIR).exists());
        // The volume's content is untouched by the cleanup.
        assert_eq!(std::fs::read_to_string(v.path().join("sub/file")).unwrap(), "inside");
    }
}
