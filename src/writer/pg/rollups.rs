//! The writer's part in keeping the usage rollups exact: the hours a batch's rows fall in are
//! marked dirty in the batch's own transaction (see the migration `usage_rollups` for why this
//! cannot miss a row or count one twice).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// Marks `hours`, and the hours of the traces `recounted` (whose totals the batch set from
/// their parts), dirty. Called last before the commit: the marks it locks are then held only
/// for the commit itself, so writers on other connections marking the same hour barely wait.
pub(crate) async fn mark(
    conn: &mut PgConnection,
    hours: &[DateTime<Utc>],
    recounted: &[Uuid],
) -> Result<(), sqlx::Error> {
    if hours.is_empty() && recounted.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT observability.mark_usage_hours($1, $2)")
        .bind(hours)
        .bind(recounted)
        .execute(conn)
        .await
        .map(|_| ())
}
