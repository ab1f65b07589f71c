//! Fuzzes resource quantities (`berth_api::validation::quantity::Quantity::parse`), the parser behind every
//! `resources.requests`/`limits` check. A quantity that parses is compared with a few fixed ones, as the
//! request-versus-limit check does. Checks for panics (overflow included, under debug assertions) and for a
//! parse that allocates more than the crate's memory budget.
#![no_main]

use berth_api::validation::quantity::Quantity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    berth_fuzz::check(data.len(), || {
        if let Some(q) = Quantity::parse(s) {
            let _ = q.is_negative();
            let _ = q.is_integer();
            for other in ["0", "1", "100m", "1Ei", "-1"] {
                if let Some(o) = Quantity::parse(other) {
                    let _ = q.cmp(&o);
                }
            }
        }
    });
});
