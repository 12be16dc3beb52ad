//! The writer's upkeep of the time partitions: at start, then every hour, it creates the
//! partitions its [`PartitionPolicy`] wants ahead and, once a day when the policy has a
//! retention, drops the old ones. A thread with a runtime and a connection of its own, so a
//! partition's DDL waiting on a lock never holds a batch back.

use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use crate::partitions::{self, PartitionPolicy};

/// How often the partitions ahead are checked.
const EVERY: Duration = Duration::from_secs(3600);
/// How soon to try again after the database was unreachable or not migrated yet.
const RETRY: Duration = Duration::from_secs(60);
/// How often to prune, when the policy has a retention (counted in checks).
const CHECKS_PER_PRUNE: u32 = 24;
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
            loop {
                let prune = policy.retention.is_some() && checks.is_multiple_of(CHECKS_PER_PRUNE);
                let result = runtime.block_on(async {
                    tokio::time::timeout(TIMEOUT, once(&mut conn, &connect, &policy, prune))
                        .await
                        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
                });
                let wait = match result {
                    Ok((created, dropped)) => {
                        if created > 0 || dropped > 0 {
                            tracing::debug!(created, dropped, "tracing-postgres: partitions maintained");
                        }
                        checks = checks.wrapping_add(1);
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
                            last_warning = Some(Instant::now());
                        }
                        RETRY
                    }
                    // Unreachable or stuck: the writes' own retries report an outage.
                    Err(_) => {
                        conn = None;
                        RETRY
                    }
                };
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
