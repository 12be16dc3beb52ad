//! Entry points for the fuzz targets in `fuzz/` (not part of the API): each takes arbitrary
//! bytes, runs a piece of the crate on them and checks its invariants, panicking when one
//! breaks (which is what a fuzzer looks for).

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::model::kinds::Status;
use crate::model::rows::{ChatMessageRow, DocumentEventRow, SpanRow, TraceRow};
use crate::model::sanitize::{TextLimits, clean_json, clean_owned, clean_text};
use crate::writer::pg::copy::{CopyEncoder, CopyRow};

/// Text cleaning: no NUL survives, the cut is at a character boundary within the limit, and
/// the result is a prefix of the input without its NULs. JSON cleaning: no NUL anywhere, depth
/// and string limits hold, and dropping and serialising the result is safe.
pub fn sanitize(data: &[u8]) {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let max = usize::from(limit);
    let cleaned = clean_text(&text, max);
    assert!(!cleaned.contains('\0'));
    assert!(cleaned.chars().count() <= max);
    let without_nul: String = text.chars().filter(|&c| c != '\0').collect();
    assert!(without_nul.starts_with(&cleaned));
    assert_eq!(clean_owned(text.clone().into_owned(), max), cleaned);

    if let Ok(value) = serde_json::from_slice::<Value>(rest) {
        let limits = TextLimits {
            json_depth: usize::from(limit % 16) + 1,
            content: max,
            label: max,
            ..TextLimits::default()
        };
        let cleaned = clean_json(value, &limits);
        let mut stack = vec![(&cleaned, 1usize)];
        while let Some((v, depth)) = stack.pop() {
            assert!(depth <= limits.json_depth + 1, "depth {depth}");
            match v {
                Value::String(s) => assert!(!s.contains('\0') && s.chars().count() <= max),
                Value::Array(a) => stack.extend(a.iter().map(|v| (v, depth + 1))),
                Value::Object(m) => {
                    for (k, v) in m {
                        assert!(!k.contains('\0') && k.chars().count() <= max);
                        stack.push((v, depth + 1));
                    }
                }
                _ => {}
            }
        }
        assert!(serde_json::to_vec(&cleaned).is_ok());
    }
}

/// Reads values out of the fuzzer's bytes.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    fn i64(&mut self) -> i64 {
        let mut b = [0u8; 8];
        let src = self.take(8);
        b[..src.len()].copy_from_slice(src);
        i64::from_le_bytes(b)
    }
    fn f64(&mut self) -> f64 {
        f64::from_bits(self.i64() as u64)
    }
    fn text(&mut self) -> String {
        let n = usize::from(self.u8());
        clean_text(&String::from_utf8_lossy(self.take(n)), 1000)
    }
    fn opt_text(&mut self) -> Option<String> {
        self.u8().is_multiple_of(2).then(|| self.text())
    }
    fn ts(&mut self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.i64() % 4_000_000_000_000_000).unwrap_or_default()
    }
    fn json(&mut self) -> Value {
        let n = usize::from(self.u8());
        serde_json::from_slice(self.take(n)).unwrap_or(Value::Null)
    }
}

/// Binary COPY encoding of rows built from arbitrary values: the stream is well framed (a
/// header, per row the column count and fields whose lengths add up, a trailer) whatever the
/// values.
pub fn encode(data: &[u8]) {
    let mut b = Bytes(data);
    let mut enc = CopyEncoder::new();
    let mut columns = Vec::new();
    while !b.0.is_empty() {
        match b.u8() % 4 {
            0 => {
                let row = SpanRow {
                    id: Uuid::from_u64_pair(b.i64() as u64, 1),
                    name: b.text().into(),
                    span_type: b.text().into(),
                    started_at: b.ts(),
                    ended_at: Some(b.ts()),
                    duration_ms: Some(b.f64()),
                    status: Some(Status::Error),
                    model: b.opt_text(),
                    prompt_tokens: Some(b.i64()),
                    cost_micros: Some(b.i64()),
                    temperature: Some(b.f64()),
                    query_text: b.opt_text(),
                    metadata: b.json(),
                    ..SpanRow::default()
                };
                enc.row(&row);
                columns.push(SpanRow::COLUMNS.len());
            }
            1 => {
                let row = TraceRow {
                    id: Uuid::from_u64_pair(b.i64() as u64, 2),
                    name: b.text().into(),
                    operation_type: b.text().into(),
                    user_id: None,
                    session_id: b.opt_text(),
                    kb_id: None,
                    started_at: b.ts(),
                    ended_at: None,
                    duration_ms: None,
                    status: Status::InProgress,
                    error_type: b.opt_text(),
                    error_message: b.opt_text(),
                    prompt_tokens: None,
                    completion_tokens: None,
                    total_tokens: Some(b.i64()),
                    total_cost_micros: Some(b.i64()),
                    metadata: b.json(),
                    start_sent: false,
                    recount: false,
                };
                enc.row(&row);
                columns.push(TraceRow::COLUMNS.len());
            }
            2 => {
                let row = ChatMessageRow {
                    id: Uuid::from_u64_pair(b.i64() as u64, 3),
                    trace_id: Uuid::nil(),
                    span_id: None,
                    session_id: b.text(),
                    user_id: Uuid::nil(),
                    kb_id: Uuid::nil(),
                    role: b.text(),
                    content: b.text(),
                    turn_number: Some(b.i64() as i32),
                    sources: b.json(),
                    citations: b.json(),
                    prompt_tokens: None,
                    completion_tokens: None,
                    response_time_ms: Some(b.f64()),
                    created_at: b.ts(),
                };
                enc.row(&row);
                columns.push(ChatMessageRow::COLUMNS.len());
            }
            _ => {
                let row = DocumentEventRow {
                    id: Uuid::from_u64_pair(b.i64() as u64, 4),
                    event_type: b.text(),
                    status: b.text(),
                    started_at: b.ts(),
                    retryable: Some(b.u8().is_multiple_of(2)),
                    metadata: b.json(),
                    ..DocumentEventRow::default()
                };
                enc.row(&row);
                columns.push(DocumentEventRow::COLUMNS.len());
            }
        }
    }
    let bytes = enc.finish();
    // Walk the stream back.
    assert!(bytes.starts_with(b"PGCOPY\n\xff\r\n\0"));
    let mut at = 19;
    let read_i16 = |at: usize| i16::from_be_bytes([bytes[at], bytes[at + 1]]);
    for n in columns {
        assert_eq!(read_i16(at), n as i16);
        at += 2;
        for _ in 0..n {
            let len = i32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            at += 4;
            if len >= 0 {
                at += len as usize;
            } else {
                assert_eq!(len, -1);
            }
        }
    }
    assert_eq!(read_i16(at), -1);
    assert_eq!(at + 2, bytes.len());
}

/// Binary `COPY` data for `observability.spans` (all its written columns), as the writer
/// encodes it: LLM spans numbered from `first`, for the COPY-versus-UNNEST benchmark.
pub fn llm_spans_copy_data(first: i64, n: usize, trace_id: Uuid) -> (String, Vec<u8>) {
    let mut enc = CopyEncoder::new();
    let now = Utc::now();
    for i in 0..n as i64 {
        let row = SpanRow {
            id: Uuid::now_v7(),
            trace_id,
            name: "openai.chat".into(),
            span_type: "llm".into(),
            started_at: now,
            ended_at: Some(now),
            duration_ms: Some(350.0),
            status: Some(Status::Success),
            model: Some("gpt-4o-mini".into()),
            prompt_tokens: Some(first + i),
            completion_tokens: Some(42),
            cost_micros: Some(120),
            cost_source: Some("given"),
            temperature: Some(0.2),
            metadata: Value::Object(serde_json::Map::new()),
            ..SpanRow::default()
        };
        enc.row(&row);
    }
    let sql = crate::writer::pg::tables::copy_sql("observability.spans", SpanRow::COLUMNS);
    (sql, enc.finish())
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_points_hold_on_awkward_inputs() {
        let mut deep = vec![3u8];
        deep.extend(std::iter::repeat_n(b'[', 5_000));
        deep.extend(std::iter::repeat_n(b']', 5_000));
        for input in [
            &b""[..],
            b"\x05a\0b\0c\xf0\x9f\x98\x80d",
            b"\x02{\"k\\u0000\": \"v\\u0000\", \"n\": [1, {\"x\": \"\\u0000\"}]}",
            &deep,
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff",
            b"\x01\x07\x07\x07\x07\x07\x07\x07\x07\x10\\.\n\t\"'\\",
        ] {
            super::sanitize(input);
            super::encode(input);
        }
    }
}
