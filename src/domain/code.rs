//! The 6-digit code a requester reads to a reviewer.
//!
//! Codes come from the OS CSPRNG, uniform over 000000..=999999 (rejection
//! sampling, no modulo bias), live only in memory, and are compared in constant
//! time. `Debug` hides them so they cannot slip into a log line.

use std::fmt;

/// How many codes there are.
const CODE_SPACE: u32 = 1_000_000;
/// The largest multiple of `CODE_SPACE` that fits in a `u32`; draws at or above
/// it are thrown away so that every code is equally likely.
const UNBIASED_LIMIT: u32 = (u32::MAX / CODE_SPACE) * CODE_SPACE;

#[derive(Clone, PartialEq, Eq)]
pub struct PendingCode(String);

impl PendingCode {
    /// Draws a fresh code from the OS CSPRNG.
    pub fn generate() -> Self {
        loop {
            let mut bytes = [0u8; 4];
            super::os_random(&mut bytes);
            let n = u32::from_le_bytes(bytes);
            if n < UNBIASED_LIMIT {
                return Self(format!("{:06}", n % CODE_SPACE));
            }
        }
    }

    /// The six digits, for the requester's page and the reviewer's drawer.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The code as people read it aloud: `123 456`.
    pub fn grouped(&self) -> String {
        format!("{} {}", &self.0[..3], &self.0[3..])
    }
}

impl fmt::Debug for PendingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingCode(******)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_six_digits_with_leading_zeros() {
        let mut saw_leading_zero = false;
        for _ in 0..20_000 {
            let code = PendingCode::generate();
            assert_eq!(code.expose().len(), 6);
            assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
            saw_leading_zero |= code.expose().starts_with('0');
        }
        // P(no leading zero in 20,000 draws) = 0.9^20000: never.
        assert!(saw_leading_zero);
    }

    /// One trial: chi-square over each of the six digit positions and over the
    /// first two digits together (100 cells), at p = 0.0001. Returns what failed.
    fn uniformity_trial() -> Option<String> {
        const DRAWS: usize = 200_000;
        let mut per_position = [[0u64; 10]; 6];
        let mut pairs = [0u64; 100];
        for _ in 0..DRAWS {
            let code = PendingCode::generate();
            let d: Vec<usize> = code.expose().bytes().map(|b| (b - b'0') as usize).collect();
            for (pos, digit) in d.iter().enumerate() {
                per_position[pos][*digit] += 1;
            }
            pairs[d[0] * 10 + d[1]] += 1;
        }
        let chi = |cells: &[u64]| {
            let expected = DRAWS as f64 / cells.len() as f64;
            cells
                .iter()
                .map(|&o| (o as f64 - expected).powi(2) / expected)
                .sum::<f64>()
        };
        // Critical values at p = 0.0001: 9 dof -> 33.72, 99 dof -> 161.1.
        for (pos, cells) in per_position.iter().enumerate() {
            let x = chi(cells);
            if x >= 33.72 {
                return Some(format!("digit {pos}: chi2 = {x}"));
            }
        }
        let x = chi(&pairs);
        (x >= 161.1).then(|| format!("digit pairs: chi2 = {x}"))
    }

    /// A fair generator fails one trial about once in 1,400 (seven tests at
    /// p = 0.0001), so the verdict needs three failed trials in a row: a real
    /// bias (modulo, a stuck digit) fails every trial, chance almost never does.
    #[test]
    fn digits_are_uniform() {
        let failures: Vec<String> = (0..3).map_while(|_| uniformity_trial()).collect();
        assert!(failures.len() < 3, "codes are not uniform: {failures:?}");
    }

    #[test]
    fn the_limit_rejects_the_biased_tail() {
        assert_eq!(UNBIASED_LIMIT % CODE_SPACE, 0);
        assert!(u64::from(UNBIASED_LIMIT) + u64::from(CODE_SPACE) > u64::from(u32::MAX));
    }

    #[test]
    fn grouping_and_redaction() {
        let code = PendingCode("012345".into());
        assert_eq!(code.grouped(), "012 345");
        assert_eq!(format!("{code:?}"), "PendingCode(******)");
    }
}
