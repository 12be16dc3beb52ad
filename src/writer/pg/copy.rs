//! PostgreSQL's binary `COPY` format, written by hand for the tables' column types.
//!
//! Binary COPY costs the server about half the CPU of `INSERT ... SELECT FROM UNNEST` and needs
//! no escaping of tabs, newlines, backslashes or `\.` lines, so text cannot break the stream.
//! Layout: a header, then per row a 16-bit field count and per field a 32-bit length (-1 for
//! NULL) and the value in network byte order, then a 16-bit -1 trailer.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

/// Microseconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// The start of a binary `COPY` stream: its signature, then no flags and no header extension
/// (two zero 32-bit integers).
pub(crate) const HEADER: [u8; 19] = *b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// A binary COPY stream being built in memory.
#[derive(Debug, Default)]
pub(crate) struct CopyEncoder {
    buf: Vec<u8>,
}

/// A row type that can be written with binary COPY.
pub(crate) trait CopyRow {
    /// The columns `encode` writes, in order.
    const COLUMNS: &'static [&'static str];
    /// Writes the row's fields (the field count is written by the caller).
    fn encode(&self, enc: &mut CopyEncoder);
}

impl CopyEncoder {
    /// A stream with its header written.
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(&HEADER);
        Self { buf }
    }

    /// An encoder of rows without the stream's header, appending to `buf`; its rows are sent
    /// after a stream's header later.
    pub fn bare_from(buf: Vec<u8>) -> Self {
        Self { buf }
    }

    /// Appends one row.
    pub fn row<R: CopyRow>(&mut self, row: &R) {
        self.begin_row::<R>();
        row.encode(self);
    }

    /// Starts a row of `R` (its field count); the caller writes its fields.
    pub fn begin_row<R: CopyRow>(&mut self) {
        self.begin_row_of(R::COLUMNS.len());
    }

    /// Starts a row of `fields` fields (at most the 1,664 columns a table can have); the
    /// caller writes them.
    pub fn begin_row_of(&mut self, fields: usize) {
        self.buf.extend_from_slice(&(fields as i16).to_be_bytes());
    }

    /// The bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The bytes, without a trailer (of a [`bare_from`](Self::bare_from) encoder).
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Writes the trailer and returns the bytes.
    #[cfg(feature = "fuzzing")]
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn field(&mut self, bytes: &[u8]) {
        // Field lengths are i32; our texts are capped far below 2 GiB by the sanitiser, but a
        // value that still does not fit is written as NULL rather than corrupting the stream.
        match i32::try_from(bytes.len()) {
            Ok(len) => {
                self.buf.extend_from_slice(&len.to_be_bytes());
                self.buf.extend_from_slice(bytes);
            }
            Err(_) => self.null(),
        }
    }

    pub fn uuid(&mut self, v: Uuid) {
        self.field(v.as_bytes());
    }

    pub fn opt_uuid(&mut self, v: Option<Uuid>) {
        match v {
            Some(v) => self.uuid(v),
            None => self.null(),
        }
    }

    /// The last `digits` of `v`'s 32 lowercase hex digits, as text: the W3C trace id (32) or
    /// span id (16) form of an id, which the server stored as a generated column before.
    pub fn uuid_hex(&mut self, v: Uuid, digits: usize) {
        let mut buf = [0u8; 32];
        let hex = v.simple().encode_lower(&mut buf);
        self.text(&hex[hex.len().saturating_sub(digits)..]);
    }

    pub fn text(&mut self, v: &str) {
        self.field(v.as_bytes());
    }

    pub fn opt_text(&mut self, v: Option<&str>) {
        match v {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    pub fn ts(&mut self, v: DateTime<Utc>) {
        let us = v.timestamp_micros().saturating_sub(PG_EPOCH_OFFSET_US);
        self.field(&us.to_be_bytes());
    }

    pub fn opt_ts(&mut self, v: Option<DateTime<Utc>>) {
        match v {
            Some(v) => self.ts(v),
            None => self.null(),
        }
    }

    pub fn opt_i32(&mut self, v: Option<i32>) {
        match v {
            Some(v) => self.field(&v.to_be_bytes()),
            None => self.null(),
        }
    }

    pub fn opt_i64(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.field(&v.to_be_bytes()),
            None => self.null(),
        }
    }

    pub fn opt_f64(&mut self, v: Option<f64>) {
        match v {
            Some(v) => self.field(&v.to_bits().to_be_bytes()),
            None => self.null(),
        }
    }

    pub fn opt_bool(&mut self, v: Option<bool>) {
        match v {
            Some(v) => self.field(&[u8::from(v)]),
            None => self.null(),
        }
    }

    /// A `jsonb` value: a version byte, then the JSON text. `Null` becomes `default`.
    pub fn jsonb(&mut self, v: &Value, default: &str) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0i32.to_be_bytes()); // length, patched below
        self.buf.push(1);
        if v.is_null() {
            self.buf.extend_from_slice(default.as_bytes());
        } else if serde_json::to_writer(&mut self.buf, v).is_err() {
            // Serialising a `Value` into a Vec cannot fail; keep the stream valid regardless.
            self.buf.truncate(start + 5);
            self.buf.extend_from_slice(default.as_bytes());
        }
        let len = self.buf.len() - start - 4;
        match i32::try_from(len) {
            Ok(len) => self.buf[start..start + 4].copy_from_slice(&len.to_be_bytes()),
            Err(_) => {
                self.buf.truncate(start);
                self.null();
            }
        }
    }

    /// A `jsonb` value whose JSON text `write` appends (it must write valid JSON).
    pub fn jsonb_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0i32.to_be_bytes()); // length, patched below
        self.buf.push(1);
        write(&mut self.buf);
        let len = self.buf.len() - start - 4;
        match i32::try_from(len) {
            Ok(len) => self.buf[start..start + 4].copy_from_slice(&len.to_be_bytes()),
            Err(_) => {
                self.buf.truncate(start);
                self.null();
            }
        }
    }

    /// A `numeric` from micro-dollars (`NULL` for `None`), in sqlx's own binary encoding of the
    /// `Decimal` with six places: the column's `numeric(10,6)` holds it as is. (A hand-written
    /// base-10000 encoder was 12% faster per value, about 7 ns, not worth its code:
    /// `BENCHMARKS.md`.)
    pub fn opt_numeric_micros(&mut self, v: Option<i64>) {
        use sqlx::Encode;
        let Some(v) = v else {
            self.null();
            return;
        };
        let mut buf = sqlx::postgres::PgArgumentBuffer::default();
        let d = rust_decimal::Decimal::new(v, 6);
        match <rust_decimal::Decimal as Encode<'_, sqlx::Postgres>>::encode_by_ref(&d, &mut buf) {
            Ok(_) => self.field(&buf),
            // Encoding a `Decimal` cannot fail; keep the row valid regardless.
            Err(_) => self.null(),
        }
    }
}
