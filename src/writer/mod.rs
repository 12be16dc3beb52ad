//! The writer: a thread of its own with its own single-threaded tokio runtime and connection
//! pool, which takes records from the queue, batches them by size or interval, and writes each
//! batch in one transaction, retrying transient failures and isolating refused rows.
//!
//! Owning its runtime means the writer works whether or not the application uses tokio, and
//! that shutting it down never needs the application's runtime (whose shutdown has deadlocked
//! many users of exporters that borrowed it).

mod batch;
mod collect;
mod cores;
mod links;
#[cfg(feature = "tcp-nodelay")]
pub(crate) mod nodelay;
pub(crate) mod pg;
mod priority;
mod probe;
mod report;
mod upkeep;
mod warnings;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

use batch::Batch;
pub(crate) use collect::Control;
use collect::Writer;
use cores::{CoreBudget, WriterCpu};
use links::{InFlight, LinkShared, spawn_link};
use pg::sink::Link;
use priority::{set_nice, writer_nice};
use report::Reporter;
pub(crate) use report::StateCallback;
use warnings::Warnings;

use crate::map::MapConfig;
use crate::model::record::Queued;
use crate::partitions::PartitionPolicy;
use crate::queue::{Shared, mark_writer_thread};

/// What the writer needs to run.
pub(crate) struct WriterConfig {
    pub connect: PgConnectOptions,
    /// How queued records become rows.
    pub map: Arc<MapConfig>,
    pub connections: u32,
    pub batch_size: usize,
    pub partitions: PartitionPolicy,
    /// Whether the writer's threads run at a lower scheduling priority.
    pub lower_priority: bool,
    pub flush_interval: Duration,
    /// The role the writer connects as, named in the fixes of its failures.
    pub role: String,
    /// The password of the database URL, masked wherever a message would repeat it.
    pub password: Option<String>,
    /// Called (on a thread of its own) when the writer's state changes.
    pub on_state_change: Option<StateCallback>,
}

impl std::fmt::Debug for WriterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterConfig")
            .field("role", &self.role)
            .field("connections", &self.connections)
            .field("batch_size", &self.batch_size)
            .field("flush_interval", &self.flush_interval)
            .finish_non_exhaustive()
    }
}

/// Starts the writer thread.
pub(crate) fn spawn(
    config: WriterConfig,
    records: Receiver<Queued>,
    control: Receiver<Control>,
    shared: Arc<Shared>,
) -> std::io::Result<JoinHandle<()>> {
    // The partitions' upkeep has a thread and a connection of its own: its DDL may wait on a
    // lock for seconds, and no batch should wait with it. It stops when the writer does.
    let nice = writer_nice(config.lower_priority);
    let upkeep_stop = upkeep::spawn(config.partitions.clone(), config.connect.clone(), nice);
    std::thread::Builder::new()
        .name("tracing-postgres-writer".into())
        .spawn(move || {
            let _stop_upkeep_with_the_writer = upkeep_stop;
            mark_writer_thread();
            set_nice(nice);
            // No statement logging, and no NOTICEs (such as "relation already exists") that
            // sqlx would log into the application's subscriber.
            let connect = config
                .connect
                .clone()
                .disable_statement_logging()
                .options([("client_min_messages", "warning")]);
            let warnings = Arc::new(Mutex::new(Warnings::default()));
            let reporter = Arc::new(Reporter::new(
                Arc::clone(&shared),
                config.role.clone(),
                config.password.clone(),
                config.on_state_change.clone(),
            ));
            let in_flight = Arc::new(InFlight::default());
            let writer_cpu = Arc::new(WriterCpu::default());
            // One thread per connection, each with its own runtime, taking whole batches from
            // `work`: while they write, this thread goes on collecting the next batch.
            let (work, batches) = crossbeam_channel::bounded::<Batch>(0);
            let mut links = Vec::new();
            for i in 0..config.connections.max(1) {
                let link = spawn_link(
                    i,
                    nice,
                    Link::new(connect.clone()),
                    batches.clone(),
                    LinkShared {
                        shared: Arc::clone(&shared),
                        warnings: Arc::clone(&warnings),
                        in_flight: Arc::clone(&in_flight),
                        writer_cpu: Arc::clone(&writer_cpu),
                        reporter: Arc::clone(&reporter),
                    },
                    // One connection checks the database at start, and again while the writer
                    // cannot write, so the state says why before (and after) any batch.
                    i == 0,
                );
                match link {
                    Ok(handle) => links.push(handle),
                    Err(e) => {
                        tracing::error!(error = %e, "tracing-postgres: cannot start a writer connection thread");
                    }
                }
            }
            drop(batches);
            if links.is_empty() {
                tracing::error!("tracing-postgres: no writer connection thread; records will be counted as dropped");
                // Count what is queued now; later pushes fail (the receiver is gone) and are
                // counted by the queue.
                let counters = &shared.counters;
                while let Ok((_, bytes)) = records.try_recv() {
                    counters.queued_bytes.fetch_sub(bytes, Relaxed);
                    counters.dropped_unwritten.fetch_add(1, Relaxed);
                }
                reporter.stopped();
                return;
            }
            let mut writer = Writer {
                work: Some(work),
                in_flight,
                shared,
                map: Arc::clone(&config.map),
                batch: Batch::with_capacity(config.batch_size.max(1)),
                batch_size: config.batch_size.max(1),
                budget: CoreBudget::new(config.lower_priority, links.len()),
                cpu_seen: cores::thread_cpu_ns(),
                writer_cpu,
                flush_interval: config.flush_interval,
                warnings,
                empty_at: Instant::now(),
                batch_since: Instant::now(),
            };
            writer.run(&records, control);
            // Every batch handed over is written (or given up at the deadline) before the
            // connection threads stop.
            writer.wait_idle();
            writer.work = None;
            for link in links {
                let _ = link.join();
            }
            writer.give_up_queued(&records);
            if let Ok(mut w) = writer.warnings.lock() {
                w.report_now(&writer.shared);
            }
            reporter.stopped();
        })
}
