//! A small parser for Kubernetes resource quantities (`100m`, `1Gi`, `2`, `1e3`, `0.5`), enough to validate
//! them and compare requests with limits. It does not produce upstream's canonical string form.
//!
//! Values are held as a count of nano-units in an `i128`, which covers every suffix up to `Ei` exactly;
//! precision finer than a nano-unit is rounded up, as upstream rounds when it must.

/// The message upstream gives for a string that is not a quantity at all.
pub const QUANTITY_REGEX_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A parsed quantity, in nano-units (so `1` is 1_000_000_000 and `1m` is 1_000_000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    /// The value times 10^9, saturated at the `i128` range.
    pub nanos: i128,
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    /// Parses a quantity string; `None` if it is not one. Like upstream's `ParseQuantity`, whitespace around
    /// the number is not part of the grammar: `" 1"` is refused, so no stored object carries a quantity that a
    /// client decoding it strictly (upstream's protobuf decoder does) would fail on.
    pub fn parse(s: &str) -> Option<Quantity> {
        let (neg, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = rest
            .bytes()
            .position(|c| !(c.is_ascii_digit() || c == b'.'))
            .unwrap_or(rest.len());
        let (num, suffix) = rest.split_at(num_end);
        let (int_part, frac_part) = match num.split_once('.') {
            Some((i, f)) => (i, f),
            None => (num, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
            return None;
        }
        // Multiplier as (numerator, power of ten) applied to the decimal number.
        let (mult, pow10): (i128, i32) = match suffix {
            "" => (1, 0),
            "n" => (1, -9),
            "u" => (1, -6),
            "m" => (1, -3),
            "k" => (1, 3),
            "M" => (1, 6),
            "G" => (1, 9),
            "T" => (1, 12),
            "P" => (1, 15),
            "E" => (1, 18),
            "Ki" => (1 << 10, 0),
            "Mi" => (1 << 20, 0),
            "Gi" => (1 << 30, 0),
            "Ti" => (1 << 40, 0),
            "Pi" => (1 << 50, 0),
            "Ei" => (1 << 60, 0),
            s if s.starts_with(['e', 'E']) => {
                let exp: i32 = s[1..].parse().ok()?;
                if !(-100..=100).contains(&exp) {
                    return None;
                }
                (1, exp)
            }
            _ => return None,
        };
        // digits as an integer, and the power of ten that scales it back to the written value.
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        let mut scale = pow10 + 9 - frac_part.len() as i32;
        let mut value: i128 = 0;
        for c in digits.bytes() {
            value = value.saturating_mul(10).saturating_add(i128::from(c - b'0'));
        }
        value = value.saturating_mul(mult);
        while scale > 0 {
            value = value.saturating_mul(10);
            scale -= 1;
        }
        let mut rounded_up = false;
        while scale < 0 {
            if value % 10 != 0 {
                rounded_up = true;
            }
            value /= 10;
            scale += 1;
        }
        if rounded_up {
            value += 1;
        }
        Some(Quantity {
            nanos: if neg { -value } else { value },
        })
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// Whether the quantity is a whole number of units.
    pub fn is_integer(&self) -> bool {
        self.nanos % NANO == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, nanos: Option<i128>) {
        assert_eq!(Quantity::parse(input).map(|q| q.nanos), nanos, "{input}");
    }

    #[test]
    fn parses_the_quantity_forms_manifests_use() {
        check("2", Some(2 * NANO));
        check("100m", Some(100_000_000));
        check("0.5", Some(500_000_000));
        check("1Gi", Some((1 << 30) * NANO));
        check("128Mi", Some(128 * (1 << 20) * NANO));
        check("1e3", Some(1000 * NANO));
        check("1E-3", Some(1_000_000));
        check("1k", Some(1000 * NANO));
        check("-1", Some(-NANO));
        check("+5", Some(5 * NANO));
        check(".5", Some(500_000_000));
        check("1.5Gi", Some(3 * (1 << 29) * NANO));
        check("1n", Some(1));
        check("0.1n", Some(1));
    }

    #[test]
    fn rejects_what_upstream_rejects() {
        for bad in [
            "", "abc", "1x", "1.2.3", "Gi", "1 Gi", "--1", "1Kb", ".", " 1", "1 ", "\t1", "1\n", " ", "+ 1",
        ] {
            check(bad, None);
        }
    }

    #[test]
    fn compares_across_suffixes() {
        let a = Quantity::parse("1000m");
        let b = Quantity::parse("1");
        assert_eq!(a, b);
        assert!(Quantity::parse("1Gi") > Quantity::parse("1G"));
        assert!(Quantity::parse("500m").is_some_and(|q| !q.is_integer()));
    }
}
