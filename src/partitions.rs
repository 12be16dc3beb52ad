//! Time partitions of the five tables: created ahead of need, listed, and dropped whole for
//! retention.
//!
//! Each table is range-partitioned by its time column (`started_at`, or `created_at` for
//! `chat_messages` and `scores`), in UTC periods of a day (the default), a week or a month, plus a `DEFAULT`
//! partition that keeps any row whose period has no partition yet. The work is done by two SQL
//! functions the migrations install, `observability.create_partitions` and
//! `observability.drop_partitions`; they are `SECURITY DEFINER`, so a role that does not own
//! the tables can be granted the right to run them (and nothing more).
//!
//! The writer keeps partitions ahead by itself ([`PartitionPolicy`], set with
//! [`Builder::partitions`](crate::Builder::partitions)): at start, then every hour, and it
//! prunes once a day when [`PartitionPolicy::retention`] is set. [`migrate`](fn@crate::migrate)
//! creates the first ones.
//!
//! ```no_run
//! # async fn f(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
//! use std::time::Duration;
//! use tracing_postgres::partitions;
//!
//! // What 90 days of retention would drop, without dropping it.
//! let report = partitions::prune(&pool, Duration::from_secs(90 * 86_400), true).await?;
//! for p in &report.partitions {
//!     println!("would drop {} (~{} rows)", p.name, p.rows_estimate);
//! }
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgExecutor;

/// The length of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PartitionStep {
    /// One UTC day (the default).
    #[default]
    Day,
    /// One week, from Monday 00:00 UTC.
    Week,
    /// One calendar month, from its first day 00:00 UTC.
    Month,
}

impl PartitionStep {
    /// The name `date_trunc` knows it by.
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionStep::Day => "day",
            PartitionStep::Week => "week",
            PartitionStep::Month => "month",
        }
    }

    /// An upper bound of its length, to turn "periods ahead" into a time span.
    fn max_len(self) -> TimeDelta {
        match self {
            PartitionStep::Day => TimeDelta::days(1),
            PartitionStep::Week => TimeDelta::days(7),
            PartitionStep::Month => TimeDelta::days(31),
        }
    }
}

/// The farthest ahead partitions are made: a year (the SQL function refuses more than ten).
pub const MAX_AHEAD_DAYS: i64 = 366;

/// Default retention of [`prune`] from the command line: 90 days, as in the spec.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 86_400);

/// How the writer keeps the partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPolicy {
    /// The length of a partition. Changing it later is safe: a new period that overlaps an
    /// existing partition is left to that partition.
    pub step: PartitionStep,
    /// How many periods after the current one have their partitions made in advance.
    pub ahead: u32,
    /// When set, the writer drops (once a day) the partitions whose whole range is older than
    /// this. `None` (the default): the writer never drops data; run [`prune`] or
    /// `tracing-postgres prune` yourself.
    pub retention: Option<Duration>,
    /// Whether the writer maintains partitions at all (default `true`). Turn it off when a
    /// scheduled job of the tables' owner does it.
    pub maintain: bool,
}

impl Default for PartitionPolicy {
    fn default() -> Self {
        Self {
            step: PartitionStep::Day,
            ahead: 3,
            retention: None,
            maintain: true,
        }
    }
}

impl PartitionPolicy {
    /// The range the partitions must cover at `now`: from the previous period (late rows) to
    /// `ahead` periods after the current one (at most [`MAX_AHEAD_DAYS`] days ahead).
    pub fn window(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let len = self.step.max_len();
        let periods = i32::try_from(self.ahead)
            .unwrap_or(i32::MAX)
            .saturating_add(1);
        let ahead = len
            .checked_mul(periods)
            .map_or(TimeDelta::days(MAX_AHEAD_DAYS), |d| {
                d.min(TimeDelta::days(MAX_AHEAD_DAYS))
            });
        let from = now.checked_sub_signed(len).unwrap_or(now);
        let to = now.checked_add_signed(ahead).unwrap_or(now);
        (from, to)
    }
}

/// One partition of one of the five tables.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Partition {
    /// The partitioned table: `traces`, `spans`, `chat_messages`, `document_events` or `scores`.
    pub table_name: String,
    /// The partition's own table, in the `observability` schema.
    #[sqlx(rename = "partition_name")]
    pub name: String,
    /// Start of its range (inclusive); `None` for the `DEFAULT` partition.
    pub range_from: Option<DateTime<Utc>>,
    /// End of its range (exclusive); `None` for the `DEFAULT` partition.
    pub range_to: Option<DateTime<Utc>>,
    /// Whether this is the table's `DEFAULT` partition.
    pub is_default: bool,
}

/// A partition made by [`create_ahead`].
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CreatedPartition {
    /// The partitioned table.
    pub table_name: String,
    /// The new partition.
    #[sqlx(rename = "partition_name")]
    pub name: String,
    /// Start of its range (inclusive).
    pub range_from: DateTime<Utc>,
    /// End of its range (exclusive).
    pub range_to: DateTime<Utc>,
    /// Rows moved into it from the `DEFAULT` partition (rows that arrived before it existed).
    pub rows_moved: i64,
}

/// A partition [`prune`] dropped, or would drop.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PrunedPartition {
    /// The partitioned table.
    pub table_name: String,
    /// The partition.
    #[sqlx(rename = "partition_name")]
    pub name: String,
    /// Start of its range.
    pub range_from: DateTime<Utc>,
    /// End of its range.
    pub range_to: DateTime<Utc>,
    /// The planner's estimate of its rows (from the last `ANALYZE`; 0 if never analyzed).
    pub rows_estimate: i64,
}

/// What [`prune`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneReport {
    /// Partitions whose whole range ends at or before this instant are dropped.
    pub cutoff: DateTime<Utc>,
    /// Whether this was a dry run (nothing dropped).
    pub dry_run: bool,
    /// The partitions dropped (or, in a dry run, that would be).
    pub partitions: Vec<PrunedPartition>,
}

/// Lists the partitions of the five tables, by table and range.
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<Partition>, sqlx::Error> {
    sqlx::query_as(
        "SELECT table_name, partition_name, range_from, range_to, is_default \
         FROM observability.partitions()",
    )
    .fetch_all(db)
    .await
}

/// Creates the partitions of `policy`'s window around now that are missing, and partitions
/// for rows waiting in a `DEFAULT` partition (moving them in). Safe to run concurrently and
/// repeatedly.
pub async fn create_ahead(
    db: impl PgExecutor<'_>,
    policy: &PartitionPolicy,
) -> Result<Vec<CreatedPartition>, sqlx::Error> {
    let (from, to) = policy.window(Utc::now());
    create(db, from, to, policy.step).await
}

/// Creates the missing partitions of `step` covering `[from, to)`, and partitions for rows
/// waiting in a `DEFAULT` partition.
pub async fn create(
    db: impl PgExecutor<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step: PartitionStep,
) -> Result<Vec<CreatedPartition>, sqlx::Error> {
    sqlx::query_as(
        "SELECT table_name, partition_name, range_from, range_to, rows_moved \
         FROM observability.create_partitions($1, $2, $3)",
    )
    .bind(from)
    .bind(to)
    .bind(step.as_str())
    .fetch_all(db)
    .await
}

/// Drops every partition whose whole range is older than `older_than` (never a `DEFAULT`
/// partition), or with `dry_run` only lists them. Retention drops whole partitions: no
/// `DELETE`, so no bloat and no vacuum debt.
pub async fn prune(
    db: impl PgExecutor<'_>,
    older_than: Duration,
    dry_run: bool,
) -> Result<PruneReport, sqlx::Error> {
    // No earlier than year 1: PostgreSQL's dates end at 4713 BC, chrono's much further.
    let floor = DateTime::from_timestamp(-62_135_596_800, 0).unwrap_or(DateTime::UNIX_EPOCH);
    let age = TimeDelta::from_std(older_than).unwrap_or(TimeDelta::MAX);
    let cutoff = Utc::now()
        .checked_sub_signed(age)
        .map_or(floor, |c| c.max(floor));
    prune_before(db, cutoff, dry_run).await
}

/// [`prune`] with an explicit cutoff: drops the partitions whose range ends at or before it.
pub async fn prune_before(
    db: impl PgExecutor<'_>,
    cutoff: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneReport, sqlx::Error> {
    let partitions = sqlx::query_as(
        "SELECT table_name, partition_name, range_from, range_to, rows_estimate \
         FROM observability.drop_partitions($1, $2)",
    )
    .bind(cutoff)
    .bind(dry_run)
    .fetch_all(db)
    .await?;
    Ok(PruneReport {
        cutoff,
        dry_run,
        partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_covers_the_previous_and_the_coming_periods() {
        let now = Utc::now();
        let p = PartitionPolicy::default();
        let (from, to) = p.window(now);
        assert_eq!(from, now - TimeDelta::days(1));
        assert_eq!(to, now + TimeDelta::days(4));
        let weekly = PartitionPolicy {
            step: PartitionStep::Week,
            ahead: 1,
            ..p
        };
        assert_eq!(weekly.window(now).1, now + TimeDelta::days(14));
        // Absurd settings are bounded, not an overflow.
        let far = PartitionPolicy {
            step: PartitionStep::Month,
            ahead: u32::MAX,
            ..PartitionPolicy::default()
        };
        assert_eq!(far.window(now).1, now + TimeDelta::days(MAX_AHEAD_DAYS));
    }
}
