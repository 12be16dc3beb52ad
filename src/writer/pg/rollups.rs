//! The writer's part in keeping the usage rollups exact: the hours a batch's rows fall in are
//! marked dirty in the batch's own transaction (see the migration `usage_rollups` for why this
//! cannot miss a row or count one twice).

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

/// Marks `hours`, and the hours of the traces `recounted` (whose totals the batch set from
/// their parts), dirty, and commits: one message, so marking costs the batch no round trip.
/// Called last in the transaction, after the recount (whose traces' hours it reads), so the
/// marks it locks are held only for the commit itself.
pub(crate) async fn commit_with_marks(
    conn: &mut PgConnection,
    hours: &[DateTime<Utc>],
    recounted: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(commit_sql(hours, recounted)))
        .execute(conn)
        .await
        .map(|_| ())
}

/// `SELECT observability.mark_usage_hours(...); COMMIT`, or `COMMIT` alone when there is
/// nothing to mark. The arguments are inlined as array literals (a simple-query message has no
/// parameters); they are timestamps and UUIDs formatted here, never text from a record, so
/// nothing in them needs quoting beyond the array's own.
fn commit_sql(hours: &[DateTime<Utc>], recounted: &[Uuid]) -> String {
    if hours.is_empty() && recounted.is_empty() {
        return "COMMIT".to_owned();
    }
    let mut sql = String::with_capacity(80 + 30 * hours.len() + 40 * recounted.len());
    sql.push_str("SELECT observability.mark_usage_hours('{");
    for (i, h) in hours.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        // Writing to a String cannot fail.
        let _ = write!(
            sql,
            "{sep}\"{}\"",
            h.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
    }
    sql.push_str("}'::timestamptz[], '{");
    for (i, t) in recounted.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(sql, "{sep}{t}");
    }
    sql.push_str("}'::uuid[]); COMMIT");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_sql_inlines_hours_and_traces() {
        assert_eq!(commit_sql(&[], &[]), "COMMIT");
        let h = DateTime::from_timestamp(1_796_000_400, 0).expect("valid");
        let t = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(
            commit_sql(&[h, h], &[t]),
            "SELECT observability.mark_usage_hours('{\"2026-11-30T01:00:00Z\",\"2026-11-30T01:00:00Z\"}'::timestamptz[], \
             '{01234567-89ab-cdef-0123-456789abcdef}'::uuid[]); COMMIT"
        );
    }
}
