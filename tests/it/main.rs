//! The integration tests, as one test binary: each module tests one part against a real
//! PostgreSQL (a database of its own per test; see `tracing-postgres-test-support`).
//!
//! Tests that need the whole process to themselves are binaries of their own beside this one:
//! `global_default.rs`, `health.rs` and `warnings.rs` install a global subscriber, and
//! `writer_priority.rs` reads the nice value of every writer thread of the process.

mod conventions;
mod hostile_input;
mod layer;
#[cfg(feature = "opentelemetry")]
mod otel;
mod partitions;
mod propagation;
mod provider;
mod query;
mod rollups;
mod scale_out;
mod scores;
mod writer;
mod writer_nodelay;
