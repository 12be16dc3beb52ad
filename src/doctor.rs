//! Checks a database for everything the writer and the readers need, each check with what it
//! found and, for a problem, the fix: the server, the schema and its migrations, the connecting
//! role's grants for writing, reading and pruning, the partitions ahead, the `DEFAULT`
//! partitions, and a test write and read in a transaction that is rolled back.
//!
//! What `tracing-postgres doctor` prints; an application can run it at start or from a health
//! endpoint too.
//!
//! ```no_run
//! # async fn f() -> Result<(), sqlx::Error> {
//! use std::str::FromStr;
//! let options = sqlx::postgres::PgConnectOptions::from_str("postgres://app@localhost/app")?;
//! let report = tracing_postgres::doctor::run(&options).await;
//! for check in &report.checks {
//!     println!("{check}");
//! }
//! assert!(report.healthy());
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection};

use crate::migrations::{MIGRATOR, latest_migration};
use crate::model::health::{ErrorKind, WriterError, writer_grants};
use crate::partitions::{self, Partition, PartitionPolicy};
use crate::schema::{TABLE_PRIVILEGES, TABLES};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// As it should be.
    Ok,
    /// Something that stops writing or reading, or loses rows' place; the check says the fix.
    Problem,
    /// Worth knowing, not a problem (such as a role that may not prune, which most should not).
    Note,
}

impl Outcome {
    /// `ok`, `problem` or `note`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Problem => "problem",
            Outcome::Note => "note",
        }
    }
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Check {
    /// What was checked: `connect`, `server`, `schema`, `migrations`, `write grants`,
    /// `read grants`, `prune grants`, `partitions ahead`, `default partitions`, `test write`.
    pub name: &'static str,
    /// How it came out.
    pub outcome: Outcome,
    /// What was found.
    pub detail: String,
    /// What fixes it, for a problem or a note.
    pub fix: Option<String>,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<8} {:<19} {}",
            self.outcome.name(),
            self.name,
            self.detail
        )?;
        if let Some(fix) = &self.fix {
            write!(f, "\n{:<28} fix: {fix}", "")?;
        }
        Ok(())
    }
}

/// Every check, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether no check found a problem.
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|c| c.outcome != Outcome::Problem)
    }

    fn ok(&mut self, name: &'static str, detail: impl Into<String>) {
        self.push(name, Outcome::Ok, detail, None::<String>);
    }

    fn push(
        &mut self,
        name: &'static str,
        outcome: Outcome,
        detail: impl Into<String>,
        fix: Option<impl Into<String>>,
    ) {
        self.checks.push(Check {
            name,
            outcome,
            detail: detail.into(),
            fix: fix.map(Into::into),
        });
    }

    fn problem(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(name, Outcome::Problem, detail, Some(fix));
    }

    /// A check that could not run: its error as the problem.
    fn failed(&mut self, name: &'static str, err: &sqlx::Error, role: &str) {
        let e = WriterError::new(err, role, None);
        self.problem(name, format!("{}: {}", e.kind, e.message), e.fix);
    }
}

/// Longest wait for the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects with `options` and runs every check. Never fails: a connection that cannot be
/// made is the first check's problem.
pub async fn run(options: &PgConnectOptions) -> Report {
    let mut report = Report::default();
    let role = options.get_username().to_owned();
    let target = format!(
        "{}:{}/{} as role \"{role}\"",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or(&role)
    );
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options));
    let mut conn = match connect.await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            report.failed("connect", &e, &role);
            return report;
        }
        Err(_) => {
            report.failed("connect", &sqlx::Error::PoolTimedOut, &role);
            return report;
        }
    };
    report.ok("connect", target);
    check_all(&mut conn, &role, &mut report).await;
    let _ = conn.close().await;
    report
}

/// Runs the checks after the connection.
async fn check_all(conn: &mut PgConnection, role: &str, report: &mut Report) {
    server(conn, role, report).await;
    if !schema(conn, role, report).await {
        return;
    }
    migrations(conn, role, report).await;
    grants(conn, role, report).await;
    partitions_ahead(conn, role, report).await;
    test_write(conn, role, report).await;
}

/// The oldest server the crate supports (`server_version_num`).
const OLDEST_SERVER: i32 = 130_000;

async fn server(conn: &mut PgConnection, role: &str, report: &mut Report) {
    let version: Result<(String, i32), _> = sqlx::query_as(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int",
    )
    .fetch_one(&mut *conn)
    .await;
    match version {
        Ok((v, n)) if n >= OLDEST_SERVER => report.ok("server", format!("PostgreSQL {v}")),
        Ok((v, _)) => report.problem(
            "server",
            format!("PostgreSQL {v} is older than 13"),
            "upgrade the server to PostgreSQL 13 or later (tested on 15)",
        ),
        Err(e) => report.failed("server", &e, role),
    }
}

const MIGRATE_FIX: &str = "run `tracing-postgres migrate` (or `tracing_postgres::migrate(&pool)`) \
    as the schema's owner";

/// Whether the schema is there (the other checks need it).
async fn schema(conn: &mut PgConnection, role: &str, report: &mut Report) -> bool {
    let found: Result<(bool, Vec<String>), _> = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'observability'), \
                ARRAY(SELECT t FROM unnest($1::text[]) AS t \
                       WHERE to_regclass('observability.' || t) IS NULL)",
    )
    .bind(&TABLES[..])
    .fetch_one(&mut *conn)
    .await;
    match found {
        Ok((false, _)) => {
            report.problem(
                "schema",
                "the schema \"observability\" does not exist",
                MIGRATE_FIX,
            );
            false
        }
        Ok((true, missing)) if !missing.is_empty() => {
            report.problem(
                "schema",
                format!("tables missing: {}", missing.join(", ")),
                MIGRATE_FIX,
            );
            false
        }
        Ok(_) => {
            report.ok("schema", "observability, with its five tables");
            true
        }
        Err(e) => {
            report.failed("schema", &e, role);
            false
        }
    }
}

async fn migrations(conn: &mut PgConnection, role: &str, report: &mut Report) {
    let needed = latest_migration();
    let readable: Result<Option<bool>, _> = sqlx::query_scalar(
        "SELECT has_table_privilege(r, 'SELECT') \
           FROM to_regclass('observability._sqlx_migrations') AS r WHERE r IS NOT NULL",
    )
    .fetch_optional(&mut *conn)
    .await
    .map(Option::flatten);
    match readable {
        Ok(None) => {
            return report.problem(
                "migrations",
                "no migration history (observability._sqlx_migrations)",
                MIGRATE_FIX,
            );
        }
        Ok(Some(false)) => {
            return report.push(
                "migrations",
                Outcome::Note,
                format!("role \"{role}\" may not read the migration history"),
                Some("run `tracing-postgres doctor` as the schema's owner to check it"),
            );
        }
        Ok(Some(true)) => {}
        Err(e) => return report.failed("migrations", &e, role),
    }
    let applied: Result<(Option<i64>, bool), _> = sqlx::query_as(
        "SELECT max(version) FILTER (WHERE success), bool_or(NOT success) IS TRUE \
           FROM observability._sqlx_migrations",
    )
    .fetch_one(&mut *conn)
    .await;
    match applied {
        Ok((_, true)) => report.problem(
            "migrations",
            "a migration failed part-way (success = false in the history)",
            "see the server's log for the failed migration, fix it, and run `tracing-postgres \
             migrate` again",
        ),
        Ok((Some(v), _)) if v >= needed => {
            report.ok("migrations", format!("current ({v})"));
        }
        Ok((v, _)) => {
            let pending = MIGRATOR.iter().filter(|m| Some(m.version) > v).count();
            report.problem(
                "migrations",
                format!(
                    "at {}, this version needs {needed} ({pending} pending)",
                    v.map_or("none".to_owned(), |v| v.to_string())
                ),
                MIGRATE_FIX,
            );
        }
        Err(e) => report.failed("migrations", &e, role),
    }
}

async fn grants(conn: &mut PgConnection, role: &str, report: &mut Report) {
    let found: Result<Grants, _> = sqlx::query_as(
        "SELECT has_schema_privilege('observability', 'USAGE') AS usage, \
                has_database_privilege(current_database(), 'TEMPORARY') AS temporary, \
                current_database() AS database, \
                ARRAY(SELECT p || ' on observability.' || t \
                        FROM unnest($1::text[]) AS t, unnest($2::text[]) AS p \
                       WHERE NOT has_table_privilege('observability.' || t, p)) AS missing, \
                coalesce(has_function_privilege(to_regprocedure( \
                    'observability.create_partitions(timestamptz, timestamptz, text)'), \
                    'EXECUTE'), false) AS create_partitions, \
                coalesce(has_function_privilege(to_regprocedure( \
                    'observability.drop_partitions(timestamptz, boolean)'), 'EXECUTE'), false) \
                  AS drop_partitions, \
                coalesce(has_function_privilege(to_regprocedure( \
                    'observability.refresh_usage_hour(timestamptz)'), 'EXECUTE'), false) \
                  AND coalesce(has_function_privilege(to_regprocedure( \
                    'observability.refresh_usage_day()'), 'EXECUTE'), false) \
                  AS refresh_rollups",
    )
    .bind(&TABLES[..])
    .bind(&TABLE_PRIVILEGES[..])
    .fetch_one(&mut *conn)
    .await;
    let g = match found {
        Ok(g) => g,
        Err(e) => return report.failed("write grants", &e, role),
    };
    let usage = if g.usage {
        Vec::new()
    } else {
        vec!["USAGE on schema observability".to_owned()]
    };
    // Writing needs every privilege; reading, USAGE and SELECT.
    let mut write: Vec<String> = usage.iter().chain(&g.missing).cloned().collect();
    if !g.temporary {
        write.push(format!("TEMPORARY on database {}", g.database));
    }
    let read: Vec<String> = usage
        .iter()
        .chain(g.missing.iter().filter(|m| m.starts_with("SELECT")))
        .cloned()
        .collect();
    if write.is_empty() {
        report.ok(
            "write grants",
            "SELECT, INSERT, UPDATE on the five tables; TEMPORARY on the database",
        );
    } else {
        report.problem(
            "write grants",
            format!("role \"{role}\" lacks {}", write.join(", ")),
            format!(
                "as the schema's owner: {}",
                writer_grants(role, &g.database)
            ),
        );
    }
    if g.create_partitions {
        report.ok(
            "partition upkeep",
            "EXECUTE on observability.create_partitions",
        );
    } else {
        report.problem(
            "partition upkeep",
            format!("role \"{role}\" may not run observability.create_partitions: the writer cannot make partitions ahead"),
            format!(
                "GRANT EXECUTE ON FUNCTION observability.create_partitions(timestamptz, \
                 timestamptz, text) TO {role}; or run `tracing-postgres migrate` daily"
            ),
        );
    }
    if g.refresh_rollups {
        report.ok(
            "rollup upkeep",
            "EXECUTE on observability.refresh_usage_hour and refresh_usage_day",
        );
    } else {
        report.problem(
            "rollup upkeep",
            format!(
                "role \"{role}\" may not run observability.refresh_usage_hour or refresh_usage_day: \
                 the writer cannot keep the usage rollups current (usage queries read the raw \
                 rows, slower)"
            ),
            format!(
                "GRANT EXECUTE ON FUNCTION observability.refresh_usage_hour(timestamptz), \
                 observability.refresh_usage_day() TO {role}"
            ),
        );
    }
    if read.is_empty() {
        report.ok("read grants", "SELECT on the five tables");
    } else {
        report.problem(
            "read grants",
            format!("role \"{role}\" lacks {}", read.join(", ")),
            format!(
                "GRANT USAGE ON SCHEMA observability TO {role}; GRANT SELECT ON ALL TABLES IN \
                 SCHEMA observability TO {role}"
            ),
        );
    }
    if g.drop_partitions {
        report.ok("prune grants", "EXECUTE on observability.drop_partitions");
    } else {
        // Most roles should not drop data: only a note.
        report.push(
            "prune grants",
            Outcome::Note,
            format!("role \"{role}\" may not prune (observability.drop_partitions)"),
            Some(format!(
                "only for the role that enforces retention: GRANT EXECUTE ON FUNCTION \
                 observability.drop_partitions(timestamptz, boolean) TO {role}"
            )),
        );
    }
}

/// What the catalog says of the role's privileges.
#[derive(Debug, sqlx::FromRow)]
struct Grants {
    usage: bool,
    temporary: bool,
    database: String,
    missing: Vec<String>,
    create_partitions: bool,
    drop_partitions: bool,
    refresh_rollups: bool,
}

/// Days ahead the partitions must cover (today included): the default policy's.
fn days_ahead() -> i64 {
    i64::from(PartitionPolicy::default().ahead)
}

async fn partitions_ahead(conn: &mut PgConnection, role: &str, report: &mut Report) {
    let list = match partitions::list(&mut *conn).await {
        Ok(l) => l,
        Err(e) => return report.failed("partitions ahead", &e, role),
    };
    let now = Utc::now();
    let until = now + TimeDelta::days(days_ahead());
    let mut gaps = Vec::new();
    for table in TABLES {
        if let Some(gap) = first_gap(&list, table, now, until) {
            gaps.push(format!("{table} from {}", gap.format("%Y-%m-%d %H:%M UTC")));
        }
    }
    if gaps.is_empty() {
        report.ok(
            "partitions ahead",
            format!(
                "the five tables have partitions until {}",
                until.format("%Y-%m-%d")
            ),
        );
    } else {
        report.problem(
            "partitions ahead",
            format!(
                "no partition for {} (rows there go to DEFAULT)",
                gaps.join(", ")
            ),
            "run `tracing-postgres migrate`, or grant EXECUTE on observability.create_partitions \
             to the writer's role so its upkeep makes them",
        );
    }
    default_partitions(conn, role, report, &list).await;
}

/// The first instant of `[from, until)` no range partition of `table` covers.
fn first_gap(
    list: &[Partition],
    table: &str,
    from: chrono::DateTime<Utc>,
    until: chrono::DateTime<Utc>,
) -> Option<chrono::DateTime<Utc>> {
    let mut ranges: Vec<_> = list
        .iter()
        .filter(|p| p.table_name == table && !p.is_default)
        .filter_map(|p| Some((p.range_from?, p.range_to?)))
        .collect();
    ranges.sort();
    let mut at = from;
    for (start, end) in ranges {
        if start > at {
            break;
        }
        if end > at {
            at = end;
        }
        if at >= until {
            return None;
        }
    }
    (at < until).then_some(at)
}

async fn default_partitions(
    conn: &mut PgConnection,
    role: &str,
    report: &mut Report,
    list: &[Partition],
) {
    let mut waiting = Vec::new();
    for p in list.iter().filter(|p| p.is_default) {
        // The name comes from the catalog; quoted all the same.
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM observability.\"{}\" LIMIT 1000000) AS r",
            p.name.replace('"', "\"\"")
        );
        match sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql))
            .fetch_one(&mut *conn)
            .await
        {
            Ok(0) => {}
            Ok(n) => waiting.push(format!("{}: {n} rows", p.name)),
            Err(e) => return report.failed("default partitions", &e, role),
        }
    }
    if waiting.is_empty() {
        report.ok("default partitions", "empty");
    } else {
        report.problem(
            "default partitions",
            format!("rows without a partition: {}", waiting.join(", ")),
            "run `tracing-postgres migrate`: it makes their partitions and moves the rows in",
        );
    }
}

async fn test_write(conn: &mut PgConnection, role: &str, report: &mut Report) {
    match write_and_read(conn).await {
        Ok(true) => report.ok(
            "test write",
            "a trace and a span written and read back (rolled back)",
        ),
        Ok(false) => report.problem(
            "test write",
            "the rows written were not read back",
            "check for row-level security policies or triggers on the tables",
        ),
        Err(e) => {
            report.failed("test write", &e, role);
            if ErrorKind::of(&e) == ErrorKind::Refused
                && let Some(last) = report.checks.last_mut()
            {
                last.fix = Some(
                    "a trigger, check or policy of your own refuses the row: see the message"
                        .into(),
                );
            }
        }
    }
}

/// Writes a trace and a span, reads them back, and rolls back.
async fn write_and_read(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let trace = uuid::Uuid::now_v7();
    let span = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO observability.traces (id, trace_id, name, operation_type, started_at) \
         VALUES ($1, replace($1::text, '-', ''), 'tracing-postgres doctor', 'doctor', now())",
    )
    .bind(trace)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO observability.spans (id, span_id, trace_id, name, span_type, started_at) \
         VALUES ($1, right(replace($1::text, '-', ''), 16), $2, 'tracing-postgres doctor', \
                 'internal', now())",
    )
    .bind(span)
    .bind(trace)
    .execute(&mut *tx)
    .await?;
    let found: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM observability.traces WHERE id = $1 \
                   AND started_at > now() - interval '1 minute') \
              + (SELECT count(*) FROM observability.spans WHERE id = $2 \
                   AND started_at > now() - interval '1 minute')",
    )
    .bind(trace)
    .bind(span)
    .fetch_one(&mut *tx)
    .await?;
    tx.rollback().await?;
    Ok(found == 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: i64) -> chrono::DateTime<Utc> {
        chrono::DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(d)
    }

    fn part(table: &str, from: i64, to: i64) -> Partition {
        Partition {
            table_name: table.into(),
            name: format!("{table}_{from}"),
            range_from: Some(day(from)),
            range_to: Some(day(to)),
            is_default: false,
        }
    }

    #[test]
    fn a_gap_is_the_first_instant_no_partition_covers() {
        let list = vec![
            part("spans", 0, 1),
            part("spans", 1, 2),
            part("spans", 3, 4),
        ];
        assert_eq!(first_gap(&list, "spans", day(0), day(2)), None);
        assert_eq!(first_gap(&list, "spans", day(0), day(4)), Some(day(2)));
        assert_eq!(first_gap(&list, "traces", day(0), day(1)), Some(day(0)));
        // A partition that starts after `from` leaves `from` uncovered.
        assert_eq!(first_gap(&list, "spans", day(-1), day(1)), Some(day(-1)));
    }

    #[test]
    fn a_problem_makes_the_report_unhealthy_and_a_note_does_not() {
        let mut r = Report::default();
        r.ok("a", "fine");
        r.push("b", Outcome::Note, "fyi", Some("maybe"));
        assert!(r.healthy());
        r.problem("c", "broken", "fix it");
        assert!(!r.healthy());
        let shown = r.checks[2].to_string();
        assert!(shown.starts_with("problem"), "{shown}");
        assert!(shown.contains("fix: fix it"), "{shown}");
    }
}
