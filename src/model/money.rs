//! Money: costs are kept in micro-dollars (an `i64`) from capture to the `numeric(10,6)`
//! column, so totals add up without rounding drift.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// Converts dollars to micro-dollars, refusing what `numeric(10,6)` cannot hold or what is not a
/// cost (negative).
pub(crate) fn cost_to_micros(cost: Decimal) -> Option<i64> {
    // Half away from zero, as PostgreSQL rounds numeric.
    let micros = cost
        .checked_mul(Decimal::from(1_000_000))?
        .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        .to_i64()?;
    money_in_range(micros)
}

/// An amount in micro-dollars that `numeric(10,6)` holds and that is a cost (not negative).
pub(crate) fn money_in_range(micros: i64) -> Option<i64> {
    (0..10_000_000_000).contains(&micros).then_some(micros)
}

/// Micro-dollars back to a decimal with six places.
pub fn micros_to_decimal(micros: i64) -> Decimal {
    Decimal::new(micros, 6)
}
