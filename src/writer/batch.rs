//! A batch of queued records grouped by table, with a span's or trace's start and end merged
//! into one row when both are in the batch.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::pg::encoded::EncodedSpans;
use crate::map::{self, MapConfig, Mapped};
use crate::model::record::Record;
use crate::model::rows::{ChatMessageRow, DocumentEventRow, PartRow, ScoreRow, SpanRow, TraceRow};

/// One row of a batch.
#[derive(Debug)]
pub(crate) struct Entry<T> {
    /// Boxed as it came from the queue: rows are large, and moving them into the batch (and
    /// again when its vector grows) cost more than the rest of the writer's work.
    pub row: Box<T>,
    /// Records this row stands for: 2 when a start and its end were merged.
    pub records: u32,
    /// `true` when no other batch can have stored a row with this key, so a plain `COPY` into
    /// the table is safe; `false` for an end whose start went out in an earlier batch, and for
    /// a start (its end may be written first, by a batch on another connection).
    pub fresh: bool,
}

impl<T> Entry<T> {
    fn new(row: Box<T>, fresh: bool) -> Self {
        Self {
            row,
            records: 1,
            fresh,
        }
    }
}

/// Rows waiting to be written, by table.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub traces: Vec<Entry<TraceRow>>,
    pub spans: Vec<Entry<SpanRow>>,
    pub chats: Vec<Entry<ChatMessageRow>>,
    pub docs: Vec<Entry<DocumentEventRow>>,
    /// Scores: insert-only, fresh (their ids are new), written by plain `COPY` on a first
    /// attempt and through the upsert, which keeps a stored row, on a retry.
    pub scores: Vec<Entry<ScoreRow>>,
    /// Shares of distributed traces' usage: inserted once each, then their traces' totals are
    /// set to the sum of their parts.
    pub parts: Vec<PartRow>,
    /// Span rows encoded for binary `COPY` as they came: the layer's closed spans, which are
    /// fresh (never a start, never merged) unless every span's start is written.
    pub encoded_spans: EncodedSpans,
    /// The hours (as Unix hours) of the encoded spans' start times, for the usage rollups'
    /// dirty marks. Kept whole in both halves of a split: marking an hour too many only costs
    /// a recomputation.
    encoded_hours: Vec<i64>,
    /// Where each trace or span row of this batch sits, so its end can replace its start.
    trace_rows: HashMap<Uuid, usize>,
    span_rows: HashMap<Uuid, usize>,
    /// Records taken from the queue into this batch.
    pub records: u64,
    /// Their bytes as counted against the queue's budget.
    pub bytes: usize,
}

impl Batch {
    /// An empty batch with room for `rows` spans (the bulk of most batches) without growing.
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            spans: Vec::with_capacity(rows),
            span_rows: HashMap::with_capacity(rows),
            encoded_spans: EncodedSpans::with_capacity(rows),
            ..Self::default()
        }
    }

    /// Adds a record taken from the queue, mapped to its rows: a closed span that no other
    /// batch can have written is encoded for `COPY` at once.
    pub fn push(&mut self, record: Record, bytes: usize, config: &MapConfig) {
        self.records += 1;
        self.bytes += bytes;
        match map::map(config, record) {
            Mapped::Closed(span) => {
                let hour = unix_hour(span.row.started_at);
                if self.encoded_hours.last() != Some(&hour) {
                    self.encoded_hours.push(hour);
                }
                self.encoded_spans
                    .push(&span.row, |buf| span.write_metadata(buf))
            }
            Mapped::Trace(row) => merge(&mut self.traces, &mut self.trace_rows, row, |r| {
                (r.id, r.is_start(), r.start_sent)
            }),
            Mapped::Span(row) => merge(&mut self.spans, &mut self.span_rows, row, |r| {
                (r.id, r.is_start(), r.start_sent)
            }),
            Mapped::Chat(row) => self.chats.push(Entry::new(row, true)),
            Mapped::Document(row) => self.docs.push(Entry::new(row, true)),
            Mapped::Part(row) => self.parts.push(*row),
            Mapped::Score(row) => self.scores.push(Entry::new(row, true)),
        }
    }

    /// Rows in the batch (after merging).
    pub fn rows(&self) -> usize {
        self.traces.len()
            + self.spans.len()
            + self.encoded_spans.rows()
            + self.chats.len()
            + self.docs.len()
            + self.scores.len()
            + self.parts.len()
    }

    /// Records the rows stand for.
    pub fn record_count(&self) -> u64 {
        fn sum<T>(v: &[Entry<T>]) -> u64 {
            v.iter().map(|e| u64::from(e.records)).sum()
        }
        sum(&self.traces)
            + sum(&self.spans)
            + self.encoded_spans.rows() as u64
            + sum(&self.chats)
            + sum(&self.docs)
            + sum(&self.scores)
            + self.parts.len() as u64
    }

    /// The hours of the start times of the batch's span and trace rows, sorted, each once:
    /// the hours whose usage rollups these rows change.
    pub fn usage_hours(&self) -> Vec<DateTime<Utc>> {
        let mut hours: Vec<i64> = self
            .traces
            .iter()
            .map(|e| unix_hour(e.row.started_at))
            .chain(self.spans.iter().map(|e| unix_hour(e.row.started_at)))
            .chain(self.encoded_hours.iter().copied())
            .collect();
        hours.sort_unstable();
        hours.dedup();
        hours
            .into_iter()
            .filter_map(|h| DateTime::from_timestamp(h * 3600, 0))
            .collect()
    }

    /// The traces whose totals are to be set from their parts after this batch: those of its
    /// parts, and those of its rows marked for a recount. Sorted, each once: the order their
    /// locks are taken in, the same in every writer.
    pub fn recounted_traces(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .parts
            .iter()
            .map(|p| p.trace_id)
            .chain(
                self.traces
                    .iter()
                    .filter(|t| t.row.recount)
                    .map(|t| t.row.id),
            )
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Splits the rows into two batches of about half the rows each, to find a row the database
    /// refuses without giving up its neighbours.
    pub fn split(mut self) -> (Batch, Batch) {
        let mut left = Batch::default();
        let mut want = self.rows() / 2;
        fn take<T>(from: &mut Vec<T>, to: &mut Vec<T>, want: &mut usize) {
            let n = (*want).min(from.len());
            to.extend(from.drain(..n));
            *want -= n;
        }
        take(&mut self.traces, &mut left.traces, &mut want);
        take(&mut self.spans, &mut left.spans, &mut want);
        left.encoded_spans = self.encoded_spans.split_first(want);
        left.encoded_hours = self.encoded_hours.clone();
        want -= left.encoded_spans.rows();
        take(&mut self.chats, &mut left.chats, &mut want);
        take(&mut self.docs, &mut left.docs, &mut want);
        take(&mut self.scores, &mut left.scores, &mut want);
        take(&mut self.parts, &mut left.parts, &mut want);
        left.records = left.record_count();
        self.records = self.record_count();
        // The bytes go with the records, so each part releases its own share when written.
        let total = left.records + self.records;
        if total > 0 {
            left.bytes = (self.bytes as u128 * left.records as u128 / total as u128) as usize;
            self.bytes -= left.bytes;
        }
        self.trace_rows.clear();
        self.span_rows.clear();
        (left, self)
    }
}

/// The hour a time falls in, counted in hours since the Unix epoch (rounded down).
fn unix_hour(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(3600)
}

/// Adds a trace or span row. A start is remembered; an end replaces its start when the start
/// is in this batch. A second end of the same row is merged away (the first end wins, as it
/// does against a stored row), so no batch holds one key twice.
fn merge<T>(
    rows: &mut Vec<Entry<T>>,
    index: &mut HashMap<Uuid, usize>,
    row: Box<T>,
    key: impl Fn(&T) -> (Uuid, bool, bool),
) {
    let (id, is_start, start_sent) = key(&row);
    match index.get(&id).map(|&i| (i, key(&rows[i].row).1)) {
        // The start is here: the end takes its place, and no other batch holds this key.
        Some((i, true)) if !is_start => {
            let entry = &mut rows[i];
            entry.row = row;
            entry.records += 1;
            entry.fresh = true;
        }
        // A repeated start, or an end after an end: nothing to add.
        Some((i, _)) => rows[i].records += 1,
        None => {
            index.insert(id, rows.len());
            // An end whose start went out in an earlier batch may meet the stored start; a
            // start may meet its end, written by a batch on another connection that committed
            // first. Both go through the upsert, which settles either order.
            let fresh = !is_start && !start_sent;
            rows.push(Entry::new(row, fresh));
        }
    }
}
