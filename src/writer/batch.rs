//! A batch of queued records grouped by table, with a span's or trace's start and end merged
//! into one row when both are in the batch.

use std::collections::HashMap;

use uuid::Uuid;

use super::copy::{CopyEncoder, CopyRow};
use super::tables::SHORT_SPAN_COLUMNS;
use crate::queue::Shared;
use crate::record::{ChatMessageRow, DocumentEventRow, Record, SpanRow, TraceRow};

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
    /// Span rows encoded for binary `COPY` as they came: the layer's closed spans, which are
    /// fresh (never a start, never merged) unless every span's start is written.
    pub encoded_spans: EncodedSpans,
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

    /// Adds a record taken from the queue; a raw span of the layer is encoded at once with
    /// `shared`'s layer options (or mapped to its row, when its start went out on its own).
    pub fn push(&mut self, record: Record, bytes: usize, shared: &Shared) {
        self.records += 1;
        self.bytes += bytes;
        match (record, shared.layer.get()) {
            (Record::Raw(raw), Some((config, limits))) if !config.span_starts => {
                crate::layer::encode_raw_span(
                    &mut self.encoded_spans,
                    config,
                    limits,
                    raw.into_raw(),
                );
            }
            (Record::Llm(raw), _) => {
                let row = crate::provider::finish_llm(&shared.limits, *raw);
                self.encoded_spans
                    .push(&row, |enc| enc.jsonb(&row.metadata, "{}"));
            }
            (row, _) => self.push_row(row, shared),
        }
    }

    fn push_row(&mut self, record: Record, shared: &Shared) {
        match record {
            Record::Trace(row) => merge(&mut self.traces, &mut self.trace_rows, row, |r| {
                (r.id, r.is_start(), r.start_sent)
            }),
            Record::Span(row) => merge(&mut self.spans, &mut self.span_rows, row, |r| {
                (r.id, r.is_start(), r.start_sent)
            }),
            Record::Chat(row) => self.chats.push(Entry::new(row, true)),
            Record::Document(row) => self.docs.push(Entry::new(row, true)),
            // A raw span not encoded at once (its start went out on its own): mapped to its
            // row, by the one mapping every raw record goes through.
            raw @ (Record::Raw(_) | Record::Llm(_)) => self.push_row(shared.finish(raw), shared),
        }
    }

    /// Rows in the batch (after merging).
    pub fn rows(&self) -> usize {
        self.traces.len()
            + self.spans.len()
            + self.encoded_spans.rows()
            + self.chats.len()
            + self.docs.len()
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
    }

    /// Splits the rows into two batches of about half the rows each, to find a row the database
    /// refuses without giving up its neighbours.
    pub fn split(mut self) -> (Batch, Batch) {
        let mut left = Batch::default();
        let mut want = self.rows() / 2;
        fn take<T>(from: &mut Vec<Entry<T>>, to: &mut Vec<Entry<T>>, want: &mut usize) {
            let n = (*want).min(from.len());
            to.extend(from.drain(..n));
            *want -= n;
        }
        take(&mut self.traces, &mut left.traces, &mut want);
        take(&mut self.spans, &mut left.spans, &mut want);
        left.encoded_spans = self.encoded_spans.split_first(want);
        want -= left.encoded_spans.rows();
        take(&mut self.chats, &mut left.chats, &mut want);
        take(&mut self.docs, &mut left.docs, &mut want);
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

/// Span rows encoded for binary `COPY`, in two streams by the columns they hold: a row whose
/// type-specific columns are all NULL goes with [`SHORT_SPAN_COLUMNS`] only.
#[derive(Debug, Default)]
pub(crate) struct EncodedSpans {
    /// Rows of [`SHORT_SPAN_COLUMNS`].
    pub short: Encoded,
    /// Rows of every column.
    pub full: Encoded,
}

impl EncodedSpans {
    /// Room for `rows` short rows (most spans) without growing; full rows grow their own.
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            short: Encoded::with_capacity(rows),
            full: Encoded::with_capacity(rows / 8),
        }
    }

    /// Appends a span's row to the stream of the columns it needs; `metadata` writes its
    /// last field, `metadata`.
    pub fn push(&mut self, row: &SpanRow, metadata: impl FnOnce(&mut CopyEncoder)) {
        let short = row.is_short();
        let (stream, fields) = if short {
            (&mut self.short, SHORT_SPAN_COLUMNS.len())
        } else {
            (&mut self.full, SpanRow::COLUMNS.len())
        };
        stream.push(|enc| {
            enc.begin_row_of(fields);
            row.encode_common(enc);
            if !short {
                row.encode_specific(enc);
            }
            metadata(enc);
        });
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.short.rows() + self.full.rows()
    }

    /// Takes the first `n` rows (or all there are) out of these: short rows first.
    pub fn split_first(&mut self, n: usize) -> EncodedSpans {
        let short = self.short.split_first(n);
        let full = self.full.split_first(n - short.rows());
        EncodedSpans { short, full }
    }
}

/// Rows encoded for binary `COPY` (without the stream's header and trailer), and where each
/// starts, so a batch can still be split row by row.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    bytes: Vec<u8>,
    starts: Vec<usize>,
}

impl Encoded {
    /// Room for `rows` rows of a typical span (about 256 bytes) without growing.
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(rows.saturating_mul(256)),
            starts: Vec::with_capacity(rows),
        }
    }

    /// Appends one row, written by `encode`.
    pub fn push(&mut self, encode: impl FnOnce(&mut CopyEncoder)) {
        let mut enc = CopyEncoder::bare_from(std::mem::take(&mut self.bytes));
        self.starts.push(enc.len());
        encode(&mut enc);
        self.bytes = enc.into_bytes();
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.starts.len()
    }

    /// The rows' bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes the first `n` rows (or all there are) out of these.
    pub fn split_first(&mut self, n: usize) -> Encoded {
        if n >= self.starts.len() {
            return std::mem::take(self);
        }
        let cut = self.starts[n];
        let rest = self.bytes.split_off(cut);
        let first = Encoded {
            bytes: std::mem::replace(&mut self.bytes, rest),
            starts: self.starts.drain(..n).collect(),
        };
        for s in &mut self.starts {
            *s -= cut;
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::record::Status;

    fn plain() -> SpanRow {
        SpanRow {
            id: Uuid::now_v7(),
            name: "handle".into(),
            span_type: "internal".into(),
            status: Some(Status::Success),
            ..SpanRow::default()
        }
    }

    /// The field count of each row, walking the rows' fields to the last byte.
    fn field_counts(rows: &Encoded) -> Vec<usize> {
        let b = rows.bytes();
        let (mut at, mut counts) = (0, Vec::new());
        while at < b.len() {
            let n = i16::from_be_bytes([b[at], b[at + 1]]) as usize;
            at += 2;
            for _ in 0..n {
                let len = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
                at += 4 + usize::try_from(len).unwrap_or(0);
            }
            counts.push(n);
        }
        assert_eq!(at, b.len());
        counts
    }

    #[test]
    fn the_short_columns_are_the_first_of_a_span_row_and_its_metadata() {
        // A short row is the full row's first fields, then its metadata.
        let n = SHORT_SPAN_COLUMNS.len() - 1;
        assert_eq!(SHORT_SPAN_COLUMNS[..n], SpanRow::COLUMNS[..n]);
        assert_eq!(SHORT_SPAN_COLUMNS.last(), Some(&"metadata"));
        assert_eq!(SpanRow::COLUMNS.last(), Some(&"metadata"));
    }

    #[test]
    fn a_span_without_type_specific_values_is_encoded_with_the_short_columns_only() {
        let mut spans = EncodedSpans::with_capacity(4);
        let rows = [
            plain(),
            SpanRow {
                model: Some("m".into()),
                ..plain()
            },
            plain(),
            SpanRow {
                error_message: Some("boom".into()),
                ..plain()
            },
            SpanRow {
                cost_micros: Some(1),
                ..plain()
            },
            SpanRow {
                output_preview: Some("out".into()),
                ..plain()
            },
        ];
        for row in &rows {
            spans.push(row, |enc| enc.jsonb(&Value::Null, "{}"));
        }
        assert_eq!(field_counts(&spans.short), [SHORT_SPAN_COLUMNS.len(); 2]);
        assert_eq!(field_counts(&spans.full), [SpanRow::COLUMNS.len(); 4]);
        assert_eq!(spans.rows(), 6);

        // Split: short rows first.
        let first = spans.split_first(3);
        assert_eq!((first.short.rows(), first.full.rows()), (2, 1));
        assert_eq!((spans.short.rows(), spans.full.rows()), (0, 3));
        assert_eq!(field_counts(&spans.full), [SpanRow::COLUMNS.len(); 3]);
        assert_eq!(field_counts(&first.full), [SpanRow::COLUMNS.len()]);
    }
}
