//! The SQL of distributed traces' totals: each process's share of a trace's usage inserted
//! once into `trace_parts`, then the trace's totals set to the sum of its parts, under a lock
//! per trace so two writers meeting on one trace converge whichever commits first.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::model::rows::PartRow;

/// The advisory lock's first key (of the two-key form, which never meets the one-key locks an
/// application takes): "tp" and "pt" in ASCII, a constant of ours.
const LOCK_CLASS: i32 = 0x7470_7074;

/// The lock key of a trace: its 128 bits folded to 32. Two traces sharing a key only wait for
/// each other.
fn lock_key(trace: Uuid) -> i32 {
    let (hi, lo) = trace.as_u64_pair();
    let folded = hi ^ lo;
    // Truncation is the point: the high and low halves folded together.
    ((folded >> 32) ^ folded) as u32 as i32
}

/// Takes the transaction's lock of each trace in `traces`, in ascending key order (the same
/// in every writer, so two writers never wait for each other in a circle). First in the
/// transaction: a lock taken after writing a trace's row could wait for a writer that waits
/// for that row.
pub(crate) async fn lock(conn: &mut PgConnection, traces: &[Uuid]) -> Result<(), sqlx::Error> {
    let mut keys: Vec<i32> = traces.iter().map(|&t| lock_key(t)).collect();
    keys.sort_unstable();
    keys.dedup();
    // A function scan over an array yields its elements in order: the locks are taken so.
    sqlx::query("SELECT count(pg_advisory_xact_lock($1, k)) FROM unnest($2::int4[]) AS k")
        .bind(LOCK_CLASS)
        .bind(&keys)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Inserts the parts; one already stored (a retried batch) is left as it is.
pub(crate) async fn insert(conn: &mut PgConnection, parts: &[PartRow]) -> Result<(), sqlx::Error> {
    let n = parts.len();
    let (mut traces, mut ids, mut starts) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::<DateTime<Utc>>::with_capacity(n),
    );
    let (mut prompts, mut completions, mut costs) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::<Option<i64>>::with_capacity(n),
    );
    for p in parts {
        traces.push(p.trace_id);
        ids.push(p.part_id);
        starts.push(p.started_at);
        prompts.push(p.prompt_tokens);
        completions.push(p.completion_tokens);
        costs.push(p.cost_micros);
    }
    sqlx::query(
        "INSERT INTO observability.trace_parts \
             (trace_id, part_id, started_at, prompt_tokens, completion_tokens, cost_usd) \
         SELECT t, p, s, pt, ct, c::numeric / 1000000 \
         FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int8[], $5::int8[], \
                     $6::int8[]) AS u(t, p, s, pt, ct, c) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&traces)
    .bind(&ids)
    .bind(&starts)
    .bind(&prompts)
    .bind(&completions)
    .bind(&costs)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Sets the totals of each trace of `traces` that has a row to the sum of its parts. Each
/// token sum is capped so that their total fits a `bigint`; a cost sum beyond the column's
/// `numeric(10, 6)` is stored NULL, as a single trace's is.
pub(crate) async fn recount(conn: &mut PgConnection, traces: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE observability.traces t \
         SET prompt_tokens = s.p, completion_tokens = s.c, total_tokens = s.p + s.c, \
             total_cost_usd = s.cost \
         FROM (SELECT trace_id, \
                      least(sum(prompt_tokens), 4611686018427387903)::int8 AS p, \
                      least(sum(completion_tokens), 4611686018427387903)::int8 AS c, \
                      CASE WHEN sum(cost_usd) < 10000 THEN round(sum(cost_usd), 6) END AS cost \
               FROM observability.trace_parts WHERE trace_id = ANY($1) GROUP BY trace_id) s \
         WHERE t.id = s.trace_id",
    )
    .bind(traces)
    .execute(conn)
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_fold_every_bit_of_the_trace_id() {
        let a = Uuid::from_u64_pair(1, 0);
        let b = Uuid::from_u64_pair(0, 1 << 40);
        assert_ne!(lock_key(a), lock_key(Uuid::nil()));
        assert_ne!(lock_key(b), lock_key(Uuid::nil()));
        assert_eq!(lock_key(a), lock_key(Uuid::from_u64_pair(0, 1)));
    }
}
