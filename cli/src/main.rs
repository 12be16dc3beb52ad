//! `tracing-postgres`: the command-line viewer of the `observability` schema.
//!
//! ```text
//! tracing-postgres migrate
//! tracing-postgres show <trace-id>
//! tracing-postgres tail [--interval 1s]
//! tracing-postgres stats [--by model|kb|user] [--bucket hour|day|week] [--since 24h]
//! tracing-postgres prune --older-than 90d [--dry-run]
//! tracing-postgres partitions
//! tracing-postgres doctor
//! tracing-postgres serve [--listen 127.0.0.1:7411] [--token TOKEN]
//! ```
//!
//! The database is `--database-url` or `DATABASE_URL`. Colours follow `--color`, `NO_COLOR`
//! and whether the output is a terminal.

mod doctor;
mod scores;
mod serve;
mod stats;
mod style;
mod tail;
mod text;
mod waterfall;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tracing_postgres::Uuid;
use tracing_postgres::partitions;
use tracing_postgres::query::{Bucket, ScoreBy, UsageBy};

/// Reads and maintains the traces that tracing-postgres stores in PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "tracing-postgres", version, about)]
struct Cli {
    /// The database (`postgres://user:password@host:port/db`).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,
    /// When to colour the output.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, global = true)]
    color: ColorWhen,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates or updates the schema, and the partitions of the coming days.
    Migrate,
    /// Draws a trace as a waterfall: its span tree, a bar for each span's time, tokens, cost
    /// and errors.
    Show {
        /// The trace id: a UUID, or 32 hex digits (W3C form).
        trace_id: String,
        /// Width of the time bars, in columns.
        #[arg(long, default_value_t = 40)]
        width: usize,
    },
    /// Prints traces as they finish, one line each.
    Tail {
        /// How often to look for new traces.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Only this operation type.
        #[arg(long)]
        operation: Option<String>,
        /// Only failed traces.
        #[arg(long)]
        errors: bool,
        /// Stop after printing this many traces.
        #[arg(long)]
        count: Option<usize>,
        /// How long a trace may run and still be shown when it ends: each poll reads the
        /// traces started within this window (at most 1,000, the latest).
        #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
        window: Duration,
    },
    /// Usage: calls, tokens, cost, latency p50/p95 and error rate; then scores: count, mean
    /// and share of negatives, by model or kb (by name for `--by user`), of the scores given
    /// over the same time.
    Stats {
        /// Grouped by.
        #[arg(long, value_enum, default_value_t = By::Model)]
        by: By,
        /// Per.
        #[arg(long, value_enum, default_value_t = Per::Hour)]
        bucket: Per,
        /// Over the last.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: Duration,
        /// Only the keys with the highest cost get lines of their own; the others are summed
        /// as "(other keys)". 0: every key.
        #[arg(long, default_value_t = 20)]
        top: usize,
    },
    /// Drops the partitions older than a retention, whole (never DELETE).
    Prune {
        /// Retention: partitions whose whole range is older are dropped (`90d`, `12w`, ...).
        #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
        older_than: Duration,
        /// Only list what would be dropped.
        #[arg(long)]
        dry_run: bool,
    },
    /// Lists the partitions of the partitioned tables.
    Partitions,
    /// Checks the database for the writer and the readers: server, schema and migrations,
    /// the role's grants, partitions, and a test write rolled back. Exits 1 on any problem.
    Doctor,
    /// Serves a read-only web viewer: traces (live), one trace's waterfall with its spans,
    /// chat and document steps, sessions, documents' ingestion, and usage charts.
    Serve {
        /// Where to listen. Any address but a loopback one needs an access token.
        #[arg(long, default_value = "127.0.0.1:7411")]
        listen: std::net::SocketAddr,
        /// The access token every request must carry (`Authorization: Bearer`, or once as
        /// `?token=` in a link, which sets a cookie).
        #[arg(long, env = serve::TOKEN_ENV, hide_env_values = true)]
        token: Option<String>,
        /// The longest any of the viewer's queries may run.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        statement_timeout: Duration,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum By {
    Model,
    Kb,
    User,
    SpanType,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Per {
    Hour,
    Day,
    Week,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.color {
        ColorWhen::Auto => {}
        ColorWhen::Always => anstream::ColorChoice::Always.write_global(),
        ColorWhen::Never => anstream::ColorChoice::Never.write_global(),
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // `tracing-postgres tail | head`: the reader is gone, which is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let Some(url) = cli.database_url else {
        return Err("no database: pass --database-url or set DATABASE_URL".into());
    };
    let mut out = anstream::stdout();
    if let Command::Doctor = cli.command {
        // Before any connection: a connection that cannot be made is the first thing it
        // reports.
        return doctor::run(&url, &mut out).await;
    }
    if let Command::Serve {
        listen,
        token,
        statement_timeout,
    } = cli.command
    {
        // Its own pool: lazy (it starts while the database is down) and with a statement
        // timeout on every connection.
        let options = serve::Options {
            listen,
            token,
            statement_timeout,
        };
        serve::run(&url, options).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&url)
        .await?;
    match cli.command {
        Command::Migrate => {
            tracing_postgres::migrate(&pool).await?;
            let parts = partitions::list(&pool).await?;
            writeln!(
                out,
                "schema up to date; {} partitions ({} default)",
                parts.len(),
                parts.iter().filter(|p| p.is_default).count()
            )?;
        }
        Command::Show { trace_id, width } => {
            let id = parse_trace_id(&trace_id)?;
            match tracing_postgres::query::trace_tree(&pool, id).await? {
                Some(tree) => {
                    write!(out, "{}", waterfall::render(&tree, width.clamp(10, 400)))?;
                    let scores = tracing_postgres::query::trace_scores(&pool, id).await?;
                    scores::print_trace(&mut out, &scores)?;
                }
                None => {
                    eprintln!("no trace {trace_id}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
        Command::Tail {
            interval,
            operation,
            errors,
            count,
            window,
        } => {
            let options = tail::Options {
                interval,
                operation,
                errors,
                count,
                window,
            };
            tail::run(&pool, &mut out, &options).await?
        }
        Command::Stats {
            by,
            bucket,
            since,
            top,
        } => {
            let by = match by {
                By::Model => UsageBy::Model,
                By::Kb => UsageBy::Kb,
                By::User => UsageBy::User,
                By::SpanType => UsageBy::SpanType,
            };
            let bucket = match bucket {
                Per::Hour => Bucket::Hour,
                Per::Day => Bucket::Day,
                Per::Week => Bucket::Week,
            };
            stats::run(&pool, &mut out, by, bucket, since, (top > 0).then_some(top)).await?;
            let score_by = match by {
                UsageBy::Model => ScoreBy::Model,
                UsageBy::Kb => ScoreBy::Kb,
                _ => ScoreBy::Name,
            };
            scores::print_stats(&pool, &mut out, score_by, since).await?;
        }
        Command::Prune {
            older_than,
            dry_run,
        } => prune(&pool, &mut out, older_than, dry_run).await?,
        Command::Partitions => {
            for p in partitions::list(&pool).await? {
                let range = match (p.range_from, p.range_to) {
                    (Some(f), Some(t)) => format!("{} .. {}", f.format("%F %R"), t.format("%F %R")),
                    _ if p.is_default => "DEFAULT".to_owned(),
                    (f, t) => format!("{f:?} .. {t:?}"),
                };
                writeln!(out, "{:<16} {:<32} {range}", p.table_name, p.name)?;
            }
        }
        Command::Doctor | Command::Serve { .. } => unreachable!("handled before connecting"),
    }
    Ok(ExitCode::SUCCESS)
}

/// A UUID in any of its forms, or a W3C trace id (32 hex digits).
fn parse_trace_id(s: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(s.trim())
        .map_err(|_| format!("not a trace id: {s:?} (expected a UUID or 32 hex digits)").into())
}

async fn prune(
    pool: &PgPool,
    out: &mut impl Write,
    older_than: Duration,
    dry_run: bool,
) -> Result<(), Error> {
    let report = partitions::prune(pool, older_than, dry_run).await?;
    let verb = if dry_run { "would drop" } else { "dropped" };
    for p in &report.partitions {
        writeln!(
            out,
            "{verb} {:<32} {} .. {}  ~{} rows",
            p.name,
            p.range_from.format("%F"),
            p.range_to.format("%F"),
            p.rows_estimate
        )?;
    }
    let rows: i64 = report.partitions.iter().map(|p| p.rows_estimate).sum();
    writeln!(
        out,
        "{verb} {} partitions (~{rows} rows) older than {}",
        report.partitions.len(),
        report.cutoff.format("%F %R UTC")
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_parse_in_uuid_and_w3c_forms() -> Result<(), Error> {
        let u = parse_trace_id("0193f0c2-8a4b-7c3d-9e5f-0123456789ab")?;
        assert_eq!(parse_trace_id("0193f0c28a4b7c3d9e5f0123456789ab")?, u);
        assert!(parse_trace_id("not-an-id").is_err());
        Ok(())
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
