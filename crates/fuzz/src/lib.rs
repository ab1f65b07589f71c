//! The memory budget shared by every fuzz target: a counting global allocator and [`check`], which runs one
//! input and aborts if the live heap grew by more than [`FACTOR`] × the input's size plus [`SLACK`] at any moment.
//! A parser that turns a small request into a large allocation is a denial-of-service hole even when it never
//! panics, so this is a finding just like a crash. It does not look at memory allocated outside Rust's global
//! allocator (libFuzzer's own), and it says nothing about time; libFuzzer's `-timeout` covers that.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// How many times its own size an input may make the code allocate (peak live bytes).
pub const FACTOR: usize = 100;

/// Fixed allowance on top of `FACTOR × len`, for buffers every parse needs whatever the input (error messages,
/// the YAML parser's state, lookup tables built once).
pub const SLACK: usize = 256 * 1024;

/// Bytes currently allocated through the global allocator.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Highest `LIVE` seen since the current input started.
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// `LIVE` + budget for the current input; `usize::MAX` while no input is being measured.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// `LIVE` when the current input started.
static START: AtomicUsize = AtomicUsize::new(0);

/// Wraps the system allocator and counts live bytes. Over the limit it prints one line and aborts, so libFuzzer
/// records the input as a crash before the machine runs out of memory.
pub struct Counting;

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(live, Relaxed);
    if live > LIMIT.load(Relaxed) {
        over_budget(live);
    }
}

#[cold]
fn over_budget(live: usize) -> ! {
    // No allocation here: we are inside the allocator. `Stderr` is unbuffered and formatting integers into it
    // does not allocate.
    let start = START.load(Relaxed);
    let (grown, budget) = (live - start, LIMIT.load(Relaxed) - start);
    let _ = writeln!(
        std::io::stderr(),
        "==berth-fuzz== memory budget exceeded: the heap grew by {grown} bytes, budget {budget} \
         ({FACTOR} x input + {SLACK})"
    );
    std::process::abort();
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s guarantees carry
// over; the only addition is atomic bookkeeping, which neither allocates nor touches the returned memory. This is
// the one unsafe block in the fuzz crate, and why the crate lives outside the workspace's `forbid(unsafe_code)`.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` on one input of `len` bytes under the memory budget, and returns what it returned. Aborts the
/// process (a libFuzzer crash) if the live heap ever exceeds its level at the start by more than
/// `FACTOR * len + SLACK`.
pub fn check<T>(len: usize, f: impl FnOnce() -> T) -> T {
    check_with_allowance(len, 0, f)
}

/// What the server may build from a small request by design, whatever the request's size: a JSON patch's copies
/// may add 3 MiB, and a YAML body's aliases may expand it to 3 MiB. Both budgets count compact JSON bytes, and a
/// `serde_json::Value` takes up to ~20 × its compact JSON in memory (a 32-byte `Value` for a one-byte `0`), so
/// the allowance is 24 × 3 MiB. Anything past it is amplification the server's bounds did not foresee.
pub const DESIGNED_EXPANSION: usize = 24 * 3 * 1024 * 1024;

/// Like [`check`], with `allowance` more bytes for a documented, fixed bound of the code under test (see
/// [`DESIGNED_EXPANSION`]). Unbounded amplification still trips it; bounded expansion by design does not.
pub fn check_with_allowance<T>(len: usize, allowance: usize, f: impl FnOnce() -> T) -> T {
    let start = LIVE.load(Relaxed);
    START.store(start, Relaxed);
    PEAK.store(start, Relaxed);
    LIMIT.store(
        start
            .saturating_add(FACTOR.saturating_mul(len))
            .saturating_add(SLACK)
            .saturating_add(allowance),
        Relaxed,
    );
    let out = f();
    LIMIT.store(usize::MAX, Relaxed);
    reward_amplification(PEAK.load(Relaxed) - start, len);
    out
}

/// Steers the fuzzer towards inputs that allocate much for their size. libFuzzer keeps an input when it hits
/// an edge a new number of times (in buckets 1, 2, 3, 4-7, 8-15, 16-31, 32-127, 128+), so running this loop
/// once per unit of amplification makes each higher ratio look like new coverage, and such inputs are kept and
/// mutated further instead of discarded for covering nothing new.
fn reward_amplification(peak_growth: usize, len: usize) {
    let ratio = peak_growth / (len + 512);
    for i in 0..ratio.min(256) {
        std::hint::black_box(i);
    }
}
