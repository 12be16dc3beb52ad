//! Plain data, at the bottom of the crate: ids, the enums stored as text, the provider's
//! inputs, the rows, the queue's item, captured fields and their values, text limits and
//! sanitation, scores, money and prices, the writer's health and the stats. Imports nothing else of
//! the crate.

pub(crate) mod fields;
pub mod health;
pub(crate) mod ids;
pub(crate) mod inputs;
pub(crate) mod kinds;
pub(crate) mod money;
pub(crate) mod prices;
pub(crate) mod record;
pub(crate) mod rows;
pub(crate) mod sanitize;
pub(crate) mod score;
pub(crate) mod stats;
pub(crate) mod traceparent;
pub(crate) mod values;
