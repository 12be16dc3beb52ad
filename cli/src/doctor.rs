//! `tracing-postgres doctor`: the checks of [`tracing_postgres::doctor`], one line each with its
//! fix, and an exit code of 1 when any found a problem.

use std::io::Write;
use std::process::ExitCode;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use tracing_postgres::doctor::{self, Outcome};

use crate::style::{self, paint};

/// Runs the checks on the database at `url` and prints them.
pub async fn run(url: &str, out: &mut impl Write) -> Result<ExitCode, crate::Error> {
    let options = PgConnectOptions::from_str(url)?;
    let report = doctor::run(&options).await;
    for check in &report.checks {
        // The library's layout, with the outcome (its first word) coloured.
        let shown = check.to_string();
        let name = check.outcome.name();
        let rest = shown.strip_prefix(name).unwrap_or(&shown);
        let colour = match check.outcome {
            Outcome::Ok => style::OK,
            Outcome::Problem => style::ERROR,
            _ => style::WARN,
        };
        writeln!(out, "{}{rest}", paint(colour, name))?;
    }
    let problems = report
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Problem)
        .count();
    if problems == 0 {
        writeln!(out, "no problem found")?;
        Ok(ExitCode::SUCCESS)
    } else {
        writeln!(out, "{problems} problem(s) found")?;
        Ok(ExitCode::FAILURE)
    }
}
