//! What makes a number valid for its column, and time arithmetic, shared by the provider and
//! the layer so both store the same value for the same input.

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

/// The instant `ms` milliseconds before `now` (`now` itself for a missing, negative or absurd
/// duration).
pub(crate) fn back_from(now: DateTime<Utc>, ms: Option<f64>) -> DateTime<Utc> {
    match ms {
        Some(ms) if ms > 0.0 && ms < 1e12 => now - TimeDelta::microseconds((ms * 1000.0) as i64),
        _ => now,
    }
}
