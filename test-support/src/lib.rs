//! Test support for the integration tests of `tracing-postgres` and its CLI: a fresh database
//! per test (dropped when the test ends) on the server in `DATABASE_URL` (started by
//! `./scripts/test`) or, without it, on a throwaway server started for the test run; and
//! private clusters for tests that stop and start a server.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};

/// A `tracing_subscriber::fmt` writer that keeps what is logged, for tests that read the
/// writer's warnings.
#[derive(Clone, Default)]
pub struct Capture(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The admin URL of the test server: `DATABASE_URL`, or else a throwaway server started once
/// for this test run (removed when the process ends).
pub fn admin_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => run_server().url(),
    }
}

/// The server of this test run when `DATABASE_URL` is not set.
fn run_server() -> &'static Cluster {
    static SERVER: std::sync::OnceLock<Cluster> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let cluster = Cluster::start();
        // Straight to stderr, past the test harness's capture of `eprintln!`: seen once.
        let _ = writeln!(
            std::io::stderr(),
            "DATABASE_URL is not set: started a throwaway PostgreSQL for this test run at {} \
             (removed when the run ends; ./scripts/test does the same for the whole suite)",
            cluster.url()
        );
        cluster.remove_when_process_ends();
        cluster
    })
}

/// A database of its own for one test, with the schema migrated. Dropped (with its
/// connections) when the test ends.
pub struct TestDb {
    pub url: String,
    pub pool: PgPool,
    pub name: String,
    /// The server's admin URL, to drop the database from.
    admin: String,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // On a thread of its own with its own runtime: a drop cannot await, and the test's
        // runtime may be a current-thread one that is busy dropping this.
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(pool) = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&admin)
                    .await
                {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(AssertSqlSafe(sql)).execute(&pool).await;
                    pool.close().await;
                }
            });
        });
        let _ = dropped.join();
    }
}

/// Replaces the database name at the end of a URL.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let slash = base.rfind('/').expect("URL has a path");
    let mut out = format!("{}/{}", &base[..slash], db);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

pub async fn fresh_db() -> TestDb {
    fresh_db_on(&admin_url()).await
}

pub async fn fresh_db_on(admin: &str) -> TestDb {
    let db = empty_db_on(admin).await;
    tracing_postgres::migrate(&db.pool).await.expect("migrate");
    db
}

/// A database of its own for one test, without the schema.
pub async fn empty_db() -> TestDb {
    empty_db_on(&admin_url()).await
}

/// A database of its own for one test, with the schema as the migrations before `version`
/// left it: for testing what a migration does to a schema that had data before it.
pub async fn db_migrated_before(version: i64) -> TestDb {
    let db = empty_db().await;
    let mut before = sqlx::migrate::Migrator::with_migrations(
        tracing_postgres::MIGRATOR
            .iter()
            .filter(|m| m.version < version)
            .cloned()
            .collect(),
    );
    before.create_schema("observability");
    before.dangerous_set_table_name(tracing_postgres::migrations::HISTORY_TABLE);
    before.run(&db.pool).await.expect("migrate");
    db
}

async fn empty_db_on(admin: &str) -> TestDb {
    let name = format!("tpg_test_{}", uuid::Uuid::now_v7().simple());
    let admin_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(admin)
        .await
        .expect("connect to the test server");
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin_pool)
        .await
        .expect("create test database");
    admin_pool.close().await;
    let url = with_database(admin, &name);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .expect("connect to the test database");
    TestDb {
        url,
        pool,
        name,
        admin: admin.to_owned(),
    }
}

/// Counts rows of a table in the observability schema.
pub async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM observability.{table}"
    )))
    .fetch_one(pool)
    .await
    .expect("count rows")
}

/// A trace's totals: prompt, completion and total tokens, and its cost as text (exact
/// decimal digits, as stored).
pub async fn trace_totals(pool: &PgPool, trace: uuid::Uuid) -> (i64, i64, i64, Option<String>) {
    sqlx::query_as(
        "SELECT prompt_tokens, completion_tokens, total_tokens, total_cost_usd::text \
         FROM observability.traces WHERE id = $1",
    )
    .bind(trace)
    .fetch_one(pool)
    .await
    .expect("the trace's totals")
}

/// Polls until `f` returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A private PostgreSQL cluster, for tests that stop and start the server. Removed on drop.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    run_as: Vec<String>,
    pub port: u16,
    /// The superuser's password, on a cluster with password authentication over TCP.
    password: Option<String>,
}

fn pg_bin() -> PathBuf {
    if let Some(b) = std::env::var("TPG_PG_BIN").ok().filter(|b| !b.is_empty()) {
        return PathBuf::from(b);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed under /usr/lib/postgresql (run ./scripts/test)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn run_as() -> Vec<String> {
    if let Some(r) = std::env::var("TPG_PG_RUN_AS")
        .ok()
        .filter(|r| !r.trim().is_empty())
    {
        return r.split_whitespace().map(str::to_owned).collect();
    }
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Vec::new();
    }
    // Root: initdb refuses to run as root, so use an unprivileged user.
    let exists = Command::new("id")
        .arg("tpgtest")
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        let _ = Command::new("useradd")
            .args(["--system", "--no-create-home", "tpgtest"])
            .status();
    }
    vec!["runuser".into(), "-u".into(), "tpgtest".into(), "--".into()]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Cluster {
    /// initdb and start a cluster on a free loopback port.
    pub fn start() -> Cluster {
        Cluster::start_with(None)
    }

    /// A cluster whose TCP connections authenticate by password (`scram-sha-256`): the
    /// superuser `postgres` has `password`.
    pub fn start_with_password(password: &str) -> Cluster {
        Cluster::start_with(Some(password))
    }

    fn start_with(password: Option<&str>) -> Cluster {
        let dir =
            std::env::temp_dir().join(format!("tpg-cluster-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let run_as = run_as();
        if run_as.len() >= 3 {
            let status = Command::new("chown")
                .arg(&run_as[2])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown cluster dir");
        }
        let c = Cluster {
            bin: pg_bin(),
            dir,
            run_as,
            port: free_port(),
            password: password.map(str::to_owned),
        };
        let data = c.dir.join("data");
        let data = data.to_str().unwrap();
        let mut args = vec![
            "-D",
            data,
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ];
        let pwfile = c.dir.join("pwfile");
        let pwfile = pwfile.to_str().unwrap();
        match password {
            Some(pw) => {
                std::fs::write(pwfile, pw).expect("write pwfile");
                if c.run_as.len() >= 3 {
                    let status = Command::new("chown")
                        .arg(&c.run_as[2])
                        .arg(pwfile)
                        .status()
                        .expect("chown");
                    assert!(status.success(), "chown pwfile");
                }
                args.extend([
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--pwfile",
                    pwfile,
                ]);
            }
            None => args.push("--auth=trust"),
        }
        c.pg("initdb", &args);
        let data = c.dir.join("data");
        let conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nmax_connections = 100\n",
            c.port,
            c.dir.display()
        );
        std::fs::write(data.join("postgresql.auto.conf"), conf).expect("write conf");
        c.start_server();
        c
    }

    fn pg(&self, program: &str, args: &[&str]) {
        let exe = self.bin.join(program);
        let mut cmd = match self.run_as.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(&exe);
                cmd
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .current_dir("/")
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_server(&self) {
        let log = self.dir.join("log").display().to_string();
        self.pg(
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-w", "-t", "60", "start"],
        );
    }

    /// Stops the server in immediate mode (like a crash).
    pub fn stop_server(&self) {
        self.pg(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("postgres://postgres:{pw}@127.0.0.1:{}/postgres", self.port),
            None => format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server and removes its directory when this process ends, however it ends:
    /// for a cluster kept in a `static`, whose drop never runs. A watchdog shell waits for the
    /// process to go.
    fn remove_when_process_ends(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = format!(
            "{} {} -D {} -m immediate -w stop >/dev/null 2>&1",
            self.run_as.join(" "),
            pg_ctl.display(),
            self.data()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}; rm -rf {dir}",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data();
        let mut cmd = match self.run_as.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(&exe);
                cmd
            }
            None => Command::new(&exe),
        };
        let _ = cmd
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .current_dir("/")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
