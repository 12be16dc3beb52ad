//! Span rows encoded for binary `COPY` as they come, in two streams by the columns they hold,
//! and kept splittable row by row (to isolate a row the database refuses).

use super::copy::CopyEncoder;
use super::copy::CopyRow;
use crate::model::rows::SpanRow;
use crate::schema::SHORT_SPAN_COLUMNS;

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
    /// last field, `metadata`, as JSON text.
    pub fn push(&mut self, row: &SpanRow, metadata: impl FnOnce(&mut Vec<u8>)) {
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
            enc.jsonb_with(metadata);
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
    use uuid::Uuid;

    use super::*;
    use crate::model::kinds::Status;

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
            spans.push(row, |buf| buf.extend_from_slice(b"{}"));
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
