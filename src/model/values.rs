//! What makes a number valid for its column, and time arithmetic, shared by the provider and
//! the layer so both store the same value for the same input.

use std::time::SystemTime;

use chrono::{DateTime, TimeDelta, Utc};

/// A count (tokens, pages, vectors...): non-negative, or `None`.
pub(crate) fn count(v: Option<i64>) -> Option<i64> {
    v.filter(|n| *n >= 0)
}

/// A 32-bit count: non-negative, or `None`.
pub(crate) fn count32(v: Option<i32>) -> Option<i32> {
    v.filter(|n| *n >= 0)
}

/// A finite number (NaN and infinities have no place in a column), or `None`.
pub(crate) fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

/// Milliseconds between two instants, with microsecond resolution.
pub(crate) fn millis_between(start: DateTime<Utc>, end: DateTime<Utc>) -> f64 {
    (end - start)
        .num_microseconds()
        .map_or(0.0, |us| us as f64 / 1000.0)
}

/// [`millis_between`] for two readings of the system clock, without making dates of them
/// first (the writer does this for every span).
pub(crate) fn millis_between_times(start: SystemTime, end: SystemTime) -> f64 {
    // Whole microseconds in 64 bits: converting `as_micros`'s u128 to a float costs more.
    let micros = |d: std::time::Duration| {
        d.as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(d.subsec_micros())) as f64
    };
    match end.duration_since(start) {
        Ok(d) => micros(d) / 1000.0,
        // The clock went back while the span was open: negative, as `millis_between` has it.
        Err(e) => -micros(e.duration()) / 1000.0,
    }
}

/// The instant `ms` milliseconds before `now` (`now` itself for a missing, negative or absurd
/// duration).
pub(crate) fn back_from(now: DateTime<Utc>, ms: Option<f64>) -> DateTime<Utc> {
    match ms {
        Some(ms) if ms > 0.0 && ms < 1e12 => now - TimeDelta::microseconds((ms * 1000.0) as i64),
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn millis_between_clock_readings_equal_millis_between_their_dates() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_795_000_000_123_456_789);
        for later_ns in [0_u64, 999, 1_000, 1_001, 2_500_499, 86_400_000_000_777] {
            let (a, b) = (t, t + Duration::from_nanos(later_ns));
            for (start, end) in [(a, b), (b, a)] {
                assert_eq!(
                    millis_between_times(start, end),
                    millis_between(start.into(), end.into()),
                    "{later_ns} ns"
                );
            }
        }
    }
}
