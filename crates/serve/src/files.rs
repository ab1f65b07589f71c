//! The process's open-file limit, which bounds how many connections a server can hold: reading it, raising the
//! soft limit to the hard one at start (as Go programs do), and deriving a default connection cap from it that
//! leaves file descriptors for everything else the process opens.
//!
//! It changes nothing but `RLIMIT_NOFILE`, and only when asked to.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// The process's open-file limits after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit in force (`None`: unlimited).
    pub soft: Option<u64>,
    /// The hard limit (`None`: unlimited).
    pub hard: Option<u64>,
}

/// Where the soft limit is raised to when the hard limit is unlimited (Linux refuses more than `fs.nr_open`,
/// 1,048,576 by default, anyway).
const UNLIMITED_TARGET: u64 = 1 << 20;

/// File descriptors kept out of every connection cap, at least: the store, the Docker socket, the agent's own
/// connections to the API server, upstream connections of proxied exec and log streams, and files a request
/// opens.
pub const RESERVED_FILES: u64 = 256;

/// The default connection cap never exceeds this: each open TLS connection costs tens of kilobytes, and more
/// than this many is no small cluster's traffic.
pub const MAX_DEFAULT_CONNECTIONS: u64 = 16_384;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the limits in force afterwards.
///
/// A systemd unit gets a soft limit of 1,024 by default (for the sake of programs that use `select`) and a much
/// higher hard limit; a server that keeps the soft one runs out of descriptors at a thousand connections. Go
/// programs raise it the same way at start.
pub fn raise_open_file_limit() -> std::io::Result<OpenFiles> {
    let limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.unwrap_or(UNLIMITED_TARGET);
    if limit.current.is_some_and(|soft| soft < target) {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(open_file_limit())
}

/// The process's open-file limits now.
pub fn open_file_limit() -> OpenFiles {
    let limit = getrlimit(Resource::Nofile);
    OpenFiles {
        soft: limit.current,
        hard: limit.maximum,
    }
}

/// The default connection cap for one listener of a process whose soft open-file limit is `soft`, when the
/// listener may use `share` of the file descriptors left after the reserve (a quarter of the limit, at least
/// [`RESERVED_FILES`]). At the common soft limit of 1,024 and a share of 1, that is 768 connections.
pub fn default_max_connections(soft: Option<u64>, share: f64) -> usize {
    let soft = soft.unwrap_or(UNLIMITED_TARGET);
    let reserve = RESERVED_FILES.max(soft / 4);
    let usable = soft.saturating_sub(reserve) as f64 * share.clamp(0.0, 1.0);
    // At least a handful, so that a tiny limit still serves someone; the reserve is then all there is.
    (usable as u64).clamp(16, MAX_DEFAULT_CONNECTIONS) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_a_reserve() {
        assert_eq!(default_max_connections(Some(1024), 1.0), 768);
        assert_eq!(default_max_connections(Some(1024), 0.25), 192);
        assert_eq!(default_max_connections(Some(4096), 1.0), 3072);
        assert_eq!(default_max_connections(Some(100), 1.0), 16);
        assert_eq!(default_max_connections(Some(1 << 20), 1.0), 16_384);
        assert_eq!(default_max_connections(None, 1.0), 16_384);
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let limits = raise_open_file_limit().unwrap();
        if let (Some(soft), Some(hard)) = (limits.soft, limits.hard) {
            assert_eq!(soft, hard);
        }
    }
}
