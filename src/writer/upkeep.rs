//! The writer's upkeep of the time partitions and the usage rollups: at start, then every
//! hour, it creates the partitions its [`PartitionPolicy`] wants ahead and, once a day when the
//! policy has a retention, drops the old ones; every few minutes it recomputes the rollups of
//! the closed hours its writes (or anyone's) marked dirty. A thread with a runtime and a connection of its own, so a
//! partition's DDL waiting on a lock never holds a batch back.

use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use crate::partitions::{self, PartitionPolicy};
use crate::rollups;

/// How often the partitions ahead are checked.
const EVERY: Duration = Duration::from_secs(3600);
/// How soon to try again after the database was unreachable or not migrated yet.
const RETRY: Duration = Duration::from_secs(60);
/// How often to prune, when the policy has a retention (counted in checks).
const CHECKS_PER_PRUNE: u32 = 24;
/// Longest a round of rollup upkeep goes on before it leaves the rest for the next round.
const ROLLUP_BUDGET: Duration = Duration::from_secs(30);
/// Longest upkeep: the SQL functions wait at most 5 s for a lock, so past this the connection
/// is stuck, and is dropped.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Starts the upkeep thread, unless the policy turns it off. It stops when the returned sender
/// is dropped (or at once, if it could not start: rows then wait in the `DEFAULT` partition
/// for a `tracing-postgres migrate`).
pub(super) fn spawn(
    policy: PartitionPolicy,
    connect: PgConnectOptions,
    nice: Option<i32>,
) -> Option<Sender<()>> {
    if !policy.maintain {
        return None;
    }
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let started = std::thread::Builder::new()
        .name("tracing-postgres-upkeep".into())
        .spawn(move || {
            crate::queue::mark_writer_thread();
            super::priority::set_nice(nice);
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::warn!(error = %e, "tracing-postgres: no partition upkeep (cannot start its runtime)");
                    return;
                }
            };
            let connect = connect
                .disable_statement_logging()
                .options([("client_min_messages", "warning")]);
            let mut conn: Option<PgConnection> = None;
            let mut checks = 0u32;
            let mut last_warning: Option<Instant> = None;
            let mut rollup_warning: Option<Instant> = None;
            let (mut partitions_next, mut rollups_next) = (Instant::now(), Instant::now());
            loop {
                if Instant::now() >= partitions_next {
                    let wait = maintain_partitions(
                        &runtime,
                        &mut conn,
                        &connect,
                        &policy,
                        &mut checks,
                        &mut last_warning,
                    );
                    partitions_next = Instant::now() + wait;
                }
                if Instant::now() >= rollups_next {
                    let wait = refresh_rollups(&runtime, &mut conn, &connect, &mut rollup_warning);
                    rollups_next = Instant::now() + wait;
                }
                let wait = partitions_next
                    .min(rollups_next)
                    .saturating_duration_since(Instant::now());
                match stopped.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => {}
                    // The writer is gone (the sender dropped): stop.
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        });
    match started {
        Ok(_) => Some(stop),
        Err(e) => {
            tracing::warn!(error = %e, "tracing-postgres: no partition upkeep (cannot start its thread)");
            None
        }
    }
}

/// One round of partition upkeep; returns how long to wait before the next.
fn maintain_partitions(
    runtime: &tokio::runtime::Runtime,
    conn: &mut Option<PgConnection>,
    connect: &PgConnectOptions,
    policy: &PartitionPolicy,
    checks: &mut u32,
    last_warning: &mut Option<Instant>,
) -> Duration {
    let prune = policy.retention.is_some() && checks.is_multiple_of(CHECKS_PER_PRUNE);
    let result = runtime.block_on(async {
        tokio::time::timeout(TIMEOUT, once(conn, connect, policy, prune))
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    });
    match result {
        Ok((created, dropped)) => {
            if created > 0 || dropped > 0 {
                tracing::debug!(created, dropped, "tracing-postgres: partitions maintained");
            }
            *checks = checks.wrapping_add(1);
            EVERY
        }
        // The functions are missing: the database is not migrated yet.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42883") => RETRY,
        // Not allowed: say how to fix it, and ask again in an hour.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => {
            tracing::warn!(
                error = %e,
                "tracing-postgres: cannot maintain the time partitions (rows \
                 without one are kept in the DEFAULT partition); grant EXECUTE on \
                 observability.create_partitions to this role, or run \
                 `tracing-postgres migrate` from a scheduled job"
            );
            EVERY
        }
        // A lock timeout behind a long query, a deadlock, a concurrent change:
        // try again soon, saying so at most once an hour.
        Err(sqlx::Error::Database(e)) => {
            if last_warning.is_none_or(|t: Instant| t.elapsed() >= EVERY) {
                tracing::warn!(error = %e, "tracing-postgres: partition upkeep failed; trying again in a minute");
                *last_warning = Some(Instant::now());
            }
            RETRY
        }
        // Unreachable or stuck: the writes' own retries report an outage.
        Err(_) => {
            *conn = None;
            RETRY
        }
    }
}

/// One round of rollup upkeep: recomputes the closed dirty hours, one transaction each, for
/// at most [`ROLLUP_BUDGET`] (the rest wait for the next round); returns how long to wait.
fn refresh_rollups(
    runtime: &tokio::runtime::Runtime,
    conn: &mut Option<PgConnection>,
    connect: &PgConnectOptions,
    last_warning: &mut Option<Instant>,
) -> Duration {
    let started = Instant::now();
    let result = runtime.block_on(async {
        let mut hours = 0usize;
        while started.elapsed() < ROLLUP_BUDGET {
            let one = tokio::time::timeout(TIMEOUT, async {
                let c = match &mut *conn {
                    Some(c) => c,
                    slot => slot.insert(PgConnection::connect_with(connect).await?),
                };
                rollups::refresh(&mut *c, chrono::Utc::now(), 1).await
            })
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))?;
            if one == 0 {
                break;
            }
            hours += one;
        }
        // Then the days the hours completed (`refresh` merged one at most).
        while started.elapsed() < ROLLUP_BUDGET {
            let one = tokio::time::timeout(TIMEOUT, async {
                match &mut *conn {
                    Some(c) => rollups::refresh_days(&mut *c, 1).await,
                    None => Ok(0),
                }
            })
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))?;
            if one == 0 {
                break;
            }
        }
        Ok::<_, sqlx::Error>(hours)
    });
    match result {
        Ok(hours) => {
            if hours > 0 {
                tracing::debug!(hours, "tracing-postgres: usage rollups refreshed");
            }
            // Out of time with hours left: go on soon, after the writer's own work.
            if started.elapsed() >= ROLLUP_BUDGET {
                RETRY
            } else {
                rollups::REFRESH_EVERY
            }
        }
        // Not migrated yet, or not allowed: reads then fall back to the raw rows, exact but
        // slower. Said at most once an hour.
        Err(sqlx::Error::Database(e)) => {
            if last_warning.is_none_or(|t: Instant| t.elapsed() >= EVERY) {
                tracing::warn!(
                    error = %e,
                    "tracing-postgres: cannot refresh the usage rollups (usage queries read \
                     the raw rows meanwhile); grant EXECUTE on \
                     observability.refresh_usage_hour and refresh_usage_day to this role"
                );
                *last_warning = Some(Instant::now());
            }
            rollups::REFRESH_EVERY
        }
        Err(_) => {
            *conn = None;
            RETRY
        }
    }
}

/// One round: the partitions ahead, and the old ones with `prune`.
async fn once(
    conn: &mut Option<PgConnection>,
    connect: &PgConnectOptions,
    policy: &PartitionPolicy,
    prune: bool,
) -> Result<(usize, usize), sqlx::Error> {
    let conn = match conn {
        Some(c) => c,
        slot => slot.insert(PgConnection::connect_with(connect).await?),
    };
    let created = partitions::create_ahead(&mut *conn, policy).await?.len();
    let dropped = match policy.retention {
        Some(age) if prune => partitions::prune(&mut *conn, age, false)
            .await?
            .partitions
            .len(),
        _ => 0,
    };
    Ok((created, dropped))
}
