//! Turns SIGTERM and SIGINT into an orderly exit. This holds the program's only unsafe code: one call to libc's
//! `signal(2)` (std already links libc, so no crate is needed). It does not handle any other signal.
//!
//! Why it exists: the kernel never applies a signal's default action to a PID namespace's init process unless that
//! process installed a handler. Containers run their command as PID 1, so a program without a SIGTERM handler
//! ignores `docker stop` and is only SIGKILLed when the grace period ends — every pod deletion would take the
//! full 30 s. Kubernetes' graceful termination expects the process to exit on SIGTERM.
//!
//! The handler itself only records the signal number in an atomic (about the only thing a signal handler may do
//! safely). A watcher thread polls it and does the printing, waiting and exiting in ordinary code.
//!
//! | applet          | on SIGTERM / SIGINT                                                     |
//! |-----------------|-------------------------------------------------------------------------|
//! | `serve`, `pause`| prints `received SIGTERM`, waits `--term-delay` (serve), exits 0         |
//! | all others      | prints `received SIGTERM`, exits 128 + signal, like the default action  |

use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

/// Signal numbers are the same on every Linux architecture.
const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;

/// How often the watcher looks at [`RECEIVED`]: fast enough that `docker stop` feels immediate.
const POLL: Duration = Duration::from_millis(50);

/// The last signal received, 0 for none. Written by the handler, read by the watcher thread.
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Whether the running applet ends with exit code 0 (a graceful shutdown) or with 128 + signal.
static GRACEFUL: AtomicBool = AtomicBool::new(false);
/// How long a graceful shutdown waits before exiting, in milliseconds.
static TERM_DELAY_MS: AtomicU64 = AtomicU64::new(0);

/// Installs the SIGTERM/SIGINT handlers and starts the watcher thread. Call once, at startup.
pub fn install() {
    for signum in [SIGTERM, SIGINT] {
        if !set_handler(signum, record) {
            eprintln!("workload: cannot install a handler for signal {signum}");
        }
    }
    thread::spawn(|| loop {
        thread::sleep(POLL);
        let signum = RECEIVED.load(Ordering::SeqCst);
        if signum != 0 {
            terminate(signum);
        }
    });
}

/// Makes termination graceful: exit code 0 after `delay`, as a well-behaved server does.
pub fn exit_gracefully_after(delay: Duration) {
    TERM_DELAY_MS.store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    GRACEFUL.store(true, Ordering::SeqCst);
}

/// The signal handler: records the signal and returns. Storing to an atomic is async-signal-safe.
extern "C" fn record(signum: c_int) {
    RECEIVED.store(signum, Ordering::SeqCst);
}

fn terminate(signum: c_int) -> ! {
    let name = if signum == SIGTERM { "SIGTERM" } else { "SIGINT" };
    println!("received {name}");
    if !GRACEFUL.load(Ordering::SeqCst) {
        std::process::exit(128 + signum);
    }
    let delay = Duration::from_millis(TERM_DELAY_MS.load(Ordering::SeqCst));
    if !delay.is_zero() {
        println!("shutting down in {:.1}s", delay.as_secs_f64());
        thread::sleep(delay);
    }
    println!("exiting with code 0");
    std::process::exit(0);
}

/// Installs `handler` for `signum` with libc's `signal()`; returns false if libc refused.
///
/// glibc's `signal()` has BSD semantics: the handler stays installed and interrupted system calls (a blocking
/// `accept`, `read`, `sleep`) are restarted, so no other code has to expect `EINTR`.
#[allow(unsafe_code)]
fn set_handler(signum: c_int, handler: extern "C" fn(c_int)) -> bool {
    extern "C" {
        // sighandler_t signal(int signum, sighandler_t handler); returns SIG_ERR, which is (void*)-1, on error.
        fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
    }
    const SIG_ERR: usize = usize::MAX;
    // SAFETY: `signal` is called with a valid signal number and a function pointer of the C handler type that
    // lives for the whole program. The handler only performs an atomic store, which is async-signal-safe.
    let previous = unsafe { signal(signum, handler) };
    previous != SIG_ERR
}
