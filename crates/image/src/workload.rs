//! berth's built-in image: the statically linked workload program (crates/workload, compiled by build.rs) as
//! `/workload`, applet symlinks in `/bin`, and an empty `/tmp` and `/etc`. It does not build the program; it only
//! lays out the image around it.

use crate::tarball::{build_tarball, ImageConfig, ImageTarball, LayerEntry};

/// The workload image's reference. Under `localhost/` so that a pull attempt (when the image is missing) fails
/// at once on loopback instead of reaching a registry; an explicit version tag, never `latest`.
pub const WORKLOAD_IMAGE: &str = concat!("localhost/berth/workload:", env!("CARGO_PKG_VERSION"));

/// The workload program, statically linked for the target berth was built for.
const WORKLOAD_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/berth-workload"));

/// Names linked to `/workload` in `/bin`: with `PATH=/bin`, exec probes such as `cat /tmp/healthy` and
/// `kubectl exec pod -- sh` find them, and the program picks the applet from the name it was started as.
const APPLET_LINKS: &[&str] = &[
    "sh", "cat", "echo", "ls", "sleep", "touch", "rm", "mkdir", "ln", "env", "true", "false", "hostname", "wget",
    "get", "pause", "serve",
];

/// Builds the workload image ([`WORKLOAD_IMAGE`]). Its default command serves HTTP on 8080; `pause` makes it the
/// pod infra container. The result is identical on every call (and across builds of the same source).
pub fn workload_image() -> ImageTarball {
    let mut files = vec![
        LayerEntry::File {
            path: "/workload".into(),
            mode: 0o755,
            bytes: WORKLOAD_BINARY.to_vec(),
        },
        LayerEntry::Dir {
            path: "/bin".into(),
            mode: 0o755,
        },
        LayerEntry::Dir {
            path: "/etc".into(),
            mode: 0o755,
        },
        // Sticky and world-writable, like every Unix /tmp.
        LayerEntry::Dir {
            path: "/tmp".into(),
            mode: 0o1777,
        },
    ];
    files.extend(APPLET_LINKS.iter().map(|name| LayerEntry::Symlink {
        path: format!("/bin/{name}"),
        target: "/workload".into(),
    }));
    let config = ImageConfig {
        entrypoint: vec!["/workload".into()],
        cmd: vec!["serve".into()],
        env: vec!["PATH=/bin".into()],
        exposed_ports: vec!["8080/tcp".into()],
        stop_signal: Some("SIGTERM".into()),
        ..ImageConfig::default()
    };
    // The reference and every path above are constants that the tests below build successfully.
    build_tarball(WORKLOAD_IMAGE, &files, &config).expect("the workload image's fixed layout is valid")
}

#[cfg(test)]
mod tests {
    //! Checks the workload image's reference and determinism; tests/docker_load.rs runs it in Docker.
    use super::*;

    #[test]
    fn reference_is_the_documented_one() {
        assert_eq!(WORKLOAD_IMAGE, "localhost/berth/workload:0.1.0");
    }

    #[test]
    fn workload_image_builds_the_same_bytes_twice() {
        let a = workload_image();
        let b = workload_image();
        assert_eq!(a, b);
        assert!(a.bytes.len() > WORKLOAD_BINARY.len());
    }

    #[test]
    fn embedded_binary_is_a_static_elf_executable() {
        // A 64-bit little-endian ELF file; a dynamically linked one has a PT_INTERP program header naming its
        // loader, which an empty image does not have.
        let elf = WORKLOAD_BINARY;
        assert_eq!(&elf[..6], b"\x7fELF\x02\x01");
        let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
        let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
        let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
        const PT_INTERP: u32 = 3;
        for i in 0..phnum {
            let at = phoff + i * phentsize;
            let p_type = u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
            assert_ne!(p_type, PT_INTERP, "the workload must be statically linked");
        }
    }

    #[test]
    fn applet_links_are_workload_applets() {
        // The workload's own table lives in crates/workload/src/applets.rs; keep this list a subset of it.
        let applets = include_str!("../../workload/src/applets.rs");
        for name in APPLET_LINKS {
            assert!(applets.contains(&format!("\"{name}\"")), "{name} is not an applet");
        }
    }
}
