//! What the writer is doing and why it is not writing: the typed state and last failure that
//! [`Stats`](crate::Stats) carries, each failure sorted into a kind with the fix it needs.
//!
//! Plain data and pure functions of an error: the writer fills them in, the application reads
//! them (`stats()`, [`Builder::on_state_change`](crate::Builder::on_state_change)), and
//! [`doctor`](crate::doctor) sorts its own connection failures the same way.

use std::fmt;
use std::time::SystemTime;

use sqlx::postgres::PgDatabaseError;

/// What the writer is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WriterState {
    /// Started, and has not yet reached the database: the first connection is being made.
    #[default]
    Connecting,
    /// The database accepted the writer's last attempt: rows are being written.
    Writing,
    /// The database cannot be written to (see [`Stats::last_error`](crate::Stats::last_error)
    /// for why); records are kept in the queue and the writer tries again with backoff.
    Retrying {
        /// When the failures began.
        since: SystemTime,
        /// Failed attempts since then (writes and checks).
        attempts: u64,
    },
    /// The guard shut the writer down.
    Stopped,
}

impl WriterState {
    /// The state's name, without its figures: `connecting`, `writing`, `retrying`, `stopped`.
    pub fn name(&self) -> &'static str {
        match self {
            WriterState::Connecting => "connecting",
            WriterState::Writing => "writing",
            WriterState::Retrying { .. } => "retrying",
            WriterState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for WriterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the writer could not write, sorted by what fixes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The server cannot be reached: nothing listens at the host and port, the name does not
    /// resolve, the connection timed out, or the server is starting or shutting down.
    Unreachable,
    /// The server refused the login: the role does not exist, the password is wrong, or
    /// `pg_hba.conf` has no entry for this client.
    AuthenticationFailed,
    /// The database named in the URL does not exist.
    DatabaseMissing,
    /// The `observability` schema is missing, or older than this version of the crate (a
    /// table, column or function it writes is missing): the migrations have not been run.
    NotMigrated,
    /// The writer's role lacks a privilege it needs (on the schema, a table or a function).
    PermissionDenied,
    /// The server's disk (or another resource: memory, connections) is exhausted.
    ResourcesExhausted,
    /// The database is read-only: a standby, or `default_transaction_read_only` is on.
    ReadOnly,
    /// The database refused a row's data; that row was isolated and counted as refused, and
    /// the rest of its batch was written.
    Refused,
    /// Any other failure; its message says more.
    Other,
}

impl ErrorKind {
    /// A short name: `unreachable`, `authentication_failed`, `database_missing`,
    /// `not_migrated`, `permission_denied`, `resources_exhausted`, `read_only`, `refused`,
    /// `other`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::AuthenticationFailed => "authentication_failed",
            ErrorKind::DatabaseMissing => "database_missing",
            ErrorKind::NotMigrated => "not_migrated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::ResourcesExhausted => "resources_exhausted",
            ErrorKind::ReadOnly => "read_only",
            ErrorKind::Refused => "refused",
            ErrorKind::Other => "other",
        }
    }

    /// Sorts a SQLSTATE (`"28P01"`, ...) into a kind.
    pub fn of_sqlstate(code: &str) -> ErrorKind {
        match code {
            // invalid_authorization_specification (no such role, no pg_hba entry),
            // invalid_password.
            c if c.starts_with("28") => ErrorKind::AuthenticationFailed,
            // invalid_catalog_name: the database does not exist.
            "3D000" => ErrorKind::DatabaseMissing,
            // insufficient_privilege.
            "42501" => ErrorKind::PermissionDenied,
            // invalid_schema_name, undefined_table, undefined_column, undefined_function,
            // undefined_object: something this version writes is not in the schema.
            "3F000" | "42P01" | "42703" | "42883" | "42704" => ErrorKind::NotMigrated,
            // insufficient_resources: disk_full, out_of_memory, too_many_connections.
            c if c.starts_with("53") => ErrorKind::ResourcesExhausted,
            // read_only_sql_transaction.
            "25006" => ErrorKind::ReadOnly,
            // connection_exception, operator_intervention (admin shutdown, crash shutdown,
            // cannot_connect_now while the server starts).
            c if c.starts_with("08") || c.starts_with("57P") => ErrorKind::Unreachable,
            // Data exceptions, integrity and cardinality violations, program limits, features
            // a value needs, exceptions raised by triggers: the data was refused.
            c if ["22", "23", "21", "54", "0A", "P0"]
                .iter()
                .any(|class| c.starts_with(class)) =>
            {
                ErrorKind::Refused
            }
            _ => ErrorKind::Other,
        }
    }

    /// Sorts an error of sqlx into a kind.
    pub fn of(err: &sqlx::Error) -> ErrorKind {
        match err {
            sqlx::Error::Database(db) => db
                .code()
                .map_or(ErrorKind::Other, |c| ErrorKind::of_sqlstate(&c)),
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => {
                ErrorKind::Unreachable
            }
            sqlx::Error::Encode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::TypeNotFound { .. } => ErrorKind::Refused,
            _ => ErrorKind::Other,
        }
    }

    /// What fixes a failure of this kind, for the role `role`.
    pub fn fix(self, role: &str) -> String {
        match self {
            ErrorKind::Unreachable => "check the host and port of the database URL \
                (DATABASE_URL) and that the server is running and accepts TCP connections \
                (listen_addresses)"
                .to_owned(),
            ErrorKind::AuthenticationFailed => format!(
                "check the user and password of the database URL: role \"{role}\" must exist \
                 (CREATE ROLE {role} LOGIN PASSWORD '...') and pg_hba.conf must allow it from \
                 this host"
            ),
            ErrorKind::DatabaseMissing => "create the database (createdb NAME) or fix the \
                database name at the end of the database URL"
                .to_owned(),
            ErrorKind::NotMigrated => "run the migrations as the schema's owner: \
                `tracing_postgres::migrate(&pool)` at start, or `tracing-postgres migrate`"
                .to_owned(),
            ErrorKind::PermissionDenied => format!(
                "grant the writer's privileges to role \"{role}\": {} (see `tracing-postgres \
                 doctor`)",
                writer_grants(role, "<db>")
            ),
            ErrorKind::ResourcesExhausted => "free disk space (or memory, or connections) on \
                the database server"
                .to_owned(),
            ErrorKind::ReadOnly => "connect to the primary, not a standby, or turn \
                default_transaction_read_only off for this database or role"
                .to_owned(),
            ErrorKind::Refused => "the row was skipped and counted in `refused`; the message \
                names the column or constraint (a trigger or check of your own, or a value \
                out of range)"
                .to_owned(),
            ErrorKind::Other => "see the message; `tracing-postgres doctor` checks the \
                database, the schema and the grants"
                .to_owned(),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The statements that give `role` what the writer needs in `database` (the README's grants).
pub(crate) fn writer_grants(role: &str, database: &str) -> String {
    format!(
        "GRANT USAGE ON SCHEMA observability TO {role}; GRANT SELECT, INSERT, UPDATE ON ALL \
         TABLES IN SCHEMA observability TO {role}; GRANT TEMPORARY ON DATABASE {database} TO \
         {role}"
    )
}

/// A failure the writer met: its kind, the server's (or the driver's) message, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriterError {
    /// What kind of failure, by what fixes it.
    pub kind: ErrorKind,
    /// The SQLSTATE the server sent, if it sent one.
    pub code: Option<String>,
    /// The message of the server or of the driver (never with the password).
    pub message: String,
    /// What fixes it, in a sentence.
    pub fix: String,
    /// When it happened.
    pub at: SystemTime,
}

impl WriterError {
    /// The failure of an error of sqlx, for the writer's role `role`. The password, when
    /// given, is masked wherever the message repeats it.
    pub(crate) fn new(err: &sqlx::Error, role: &str, password: Option<&str>) -> WriterError {
        let mut message = match err {
            sqlx::Error::Database(db) => {
                let mut m = db.message().to_owned();
                // The server's detail names the missing privilege's object or the constraint.
                if let Some(detail) = db
                    .try_downcast_ref::<PgDatabaseError>()
                    .and_then(PgDatabaseError::detail)
                {
                    m.push_str(" (");
                    m.push_str(detail);
                    m.push(')');
                }
                m
            }
            sqlx::Error::PoolTimedOut => "timed out".to_owned(),
            other => other.to_string(),
        };
        // A short password could be any word of the message: only a real one is masked.
        if let Some(pw) = password.filter(|p| p.len() >= 3) {
            message = message.replace(pw, "***");
        }
        let kind = ErrorKind::of(err);
        let code = match err {
            sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
            _ => None,
        };
        WriterError::of_kind(kind, code, message, role)
    }

    /// The same failure, sorted into another kind (with that kind's fix).
    pub(crate) fn with_kind(mut self, kind: ErrorKind, role: &str) -> WriterError {
        if kind != self.kind {
            self.kind = kind;
            self.fix = kind.fix(role);
        }
        self
    }

    /// A failure found by a check rather than met by a statement.
    pub(crate) fn of_kind(
        kind: ErrorKind,
        code: Option<String>,
        message: String,
        role: &str,
    ) -> WriterError {
        WriterError {
            kind,
            code,
            message,
            fix: kind.fix(role),
            at: SystemTime::now(),
        }
    }
}

impl fmt::Display for WriterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}; fix: {}", self.kind, self.message, self.fix)
    }
}

impl std::error::Error for WriterError {}

/// The writer's state and last failure, as kept between its threads (behind a lock in the
/// counters), with the transitions between states.
#[derive(Debug, Default)]
pub(crate) struct Health {
    pub state: WriterState,
    pub last_error: Option<WriterError>,
    pub recovered_at: Option<SystemTime>,
}

impl Health {
    /// A failure that keeps the records for another attempt: the state becomes (or stays)
    /// retrying. Returns whether this is news: the state changed, or the kind of failure did.
    pub fn failed(&mut self, err: WriterError) -> bool {
        let news = !matches!(self.state, WriterState::Retrying { .. })
            || self.last_error.as_ref().map(|e| e.kind) != Some(err.kind);
        self.state = match self.state {
            WriterState::Retrying { since, attempts } => WriterState::Retrying {
                since,
                attempts: attempts.saturating_add(1),
            },
            _ => WriterState::Retrying {
                since: err.at,
                attempts: 1,
            },
        };
        self.last_error = Some(err);
        news
    }

    /// A row the database refused: the state is unchanged (the database answers), the reason
    /// is kept as the last error.
    pub fn refused(&mut self, err: WriterError) {
        self.last_error = Some(err);
    }

    /// An attempt that reached the database and was accepted. Returns the state before, when
    /// it changed.
    pub fn wrote(&mut self) -> Option<WriterState> {
        let before = self.state;
        match before {
            WriterState::Writing | WriterState::Stopped => return None,
            WriterState::Retrying { .. } => {
                self.last_error = None;
                self.recovered_at = Some(SystemTime::now());
            }
            WriterState::Connecting => {}
        }
        self.state = WriterState::Writing;
        Some(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_sort_into_the_kind_that_names_their_fix() {
        for (code, kind) in [
            ("28P01", ErrorKind::AuthenticationFailed),
            ("28000", ErrorKind::AuthenticationFailed),
            ("3D000", ErrorKind::DatabaseMissing),
            ("42501", ErrorKind::PermissionDenied),
            ("42P01", ErrorKind::NotMigrated),
            ("3F000", ErrorKind::NotMigrated),
            ("42703", ErrorKind::NotMigrated),
            ("42883", ErrorKind::NotMigrated),
            ("53100", ErrorKind::ResourcesExhausted),
            ("25006", ErrorKind::ReadOnly),
            ("57P03", ErrorKind::Unreachable),
            ("08006", ErrorKind::Unreachable),
            ("23514", ErrorKind::Refused),
            ("22021", ErrorKind::Refused),
            ("P0001", ErrorKind::Refused),
            ("40001", ErrorKind::Other),
        ] {
            assert_eq!(ErrorKind::of_sqlstate(code), kind, "{code}");
        }
        assert_eq!(
            ErrorKind::of(&sqlx::Error::PoolTimedOut),
            ErrorKind::Unreachable
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            ErrorKind::of(&sqlx::Error::Io(refused)),
            ErrorKind::Unreachable
        );
    }

    #[test]
    fn the_fix_names_the_role_and_the_command() {
        assert!(
            ErrorKind::PermissionDenied
                .fix("app_writer")
                .contains("TO app_writer")
        );
        assert!(
            ErrorKind::NotMigrated
                .fix("x")
                .contains("tracing-postgres migrate")
        );
        assert!(ErrorKind::Unreachable.fix("x").contains("host and port"));
        assert!(
            ErrorKind::AuthenticationFailed
                .fix("ghost")
                .contains("\"ghost\"")
        );
    }

    fn failure(kind: ErrorKind) -> WriterError {
        WriterError::of_kind(kind, None, kind.name().to_owned(), "app")
    }

    #[test]
    fn failures_count_attempts_from_the_first_and_writing_clears_them() {
        let mut h = Health::default();
        assert_eq!(h.state, WriterState::Connecting);
        assert!(h.failed(failure(ErrorKind::Unreachable)));
        // The same kind again is no news; another kind is.
        assert!(!h.failed(failure(ErrorKind::Unreachable)));
        assert!(h.failed(failure(ErrorKind::NotMigrated)));
        let WriterState::Retrying { since, attempts } = h.state else {
            panic!("{:?}", h.state);
        };
        assert_eq!(attempts, 3);
        assert!(since <= SystemTime::now());
        assert_eq!(
            h.last_error.as_ref().map(|e| e.kind),
            Some(ErrorKind::NotMigrated)
        );
        assert!(matches!(h.wrote(), Some(WriterState::Retrying { .. })));
        assert_eq!(h.state, WriterState::Writing);
        assert_eq!(h.last_error, None);
        assert!(h.recovered_at.is_some());
        assert_eq!(h.wrote(), None);
        // A refused row is kept as the last error without changing the state.
        h.refused(failure(ErrorKind::Refused));
        assert_eq!(h.state, WriterState::Writing);
        assert_eq!(h.wrote(), None);
        assert_eq!(
            h.last_error.as_ref().map(|e| e.kind),
            Some(ErrorKind::Refused)
        );
    }

    #[test]
    fn the_first_write_moves_connecting_to_writing_without_a_recovery() {
        let mut h = Health::default();
        assert_eq!(h.wrote(), Some(WriterState::Connecting));
        assert_eq!(h.recovered_at, None);
    }

    #[test]
    fn the_password_is_masked_in_the_message() {
        let err = sqlx::Error::Protocol("bad login for hunter2-secret".into());
        let e = WriterError::new(&err, "app", Some("hunter2-secret"));
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        assert!(e.message.contains("***"));
        assert_eq!(e.kind, ErrorKind::Other);
    }
}
