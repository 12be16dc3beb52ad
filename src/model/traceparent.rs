//! The W3C Trace Context `traceparent` header value ([`TraceParent`]): strict parsing and its
//! text form.
//!
//! `version "-" trace-id "-" parent-id "-" trace-flags`, each in lowercase hex
//! (<https://www.w3.org/TR/trace-context/#traceparent-header>). Version `00` is exactly 55
//! characters. A later version may append fields after a `-`; its first four fields are read
//! as version `00`'s, as the specification asks. Version `ff`, an all-zero trace or parent id,
//! upper-case hex and anything else malformed are refused with a [`TraceParentError`] naming
//! why. A value longer than 512 bytes is refused unread.

use std::fmt;

use uuid::Uuid;

use super::ids::{SpanId, TraceId};

/// The length of a version-`00` value.
const V00_LEN: usize = 55;

/// The longest value accepted: a later version may add fields, but a header of kilobytes is
/// not a trace context.
pub(crate) const MAX_LEN: usize = 512;

/// The longest `tracestate` kept: the W3C specification's limit for what a vendor must pass
/// on.
const MAX_TRACESTATE: usize = 512;

/// A `tracestate` header value fit to be passed on (trimmed), or `None`: empty, longer than 512
/// bytes, or with characters outside printable ASCII (a NUL, a line break, anything not
/// ASCII). Its list members are not checked one by one: it is passed on as it came.
pub(crate) fn valid_tracestate(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let ok = !value.is_empty()
        && value.len() <= MAX_TRACESTATE
        && value.bytes().all(|b| (0x20..0x7f).contains(&b));
    ok.then_some(value)
}

/// A parsed `traceparent`: the trace, the parent span in the process that sent it, and the
/// trace flags.
///
/// ```
/// use tracing_postgres::TraceParent;
/// let tp = TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
/// assert!(tp.sampled());
/// assert_eq!(tp.to_string(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
/// assert!(TraceParent::parse("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace (16 bytes, never all zero).
    pub trace_id: TraceId,
    /// The sender's span (8 bytes, never all zero): the parent of the receiver's spans.
    pub parent_id: [u8; 8],
    /// The trace flags; bit 0 is `sampled`.
    pub flags: u8,
}

/// Why a `traceparent` value was refused. [`as_str`](Self::as_str) names the reason, as
/// counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TraceParentError {
    /// Longer than 512 bytes.
    TooLong,
    /// Not 55 characters (version `00`), or shorter than 55 (a later version), or a later
    /// version whose extra fields do not start with `-`.
    Length,
    /// A field not separated by `-` where the format has one.
    Separator,
    /// A field with a character that is not lowercase hex (upper case included, and anything
    /// not ASCII).
    NotLowerHex,
    /// Version `ff`, which the specification forbids.
    Version,
    /// The trace id is all zeros.
    ZeroTraceId,
    /// The parent id is all zeros.
    ZeroParentId,
}

impl TraceParentError {
    /// The reason as a short snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLong => "too_long",
            Self::Length => "length",
            Self::Separator => "separator",
            Self::NotLowerHex => "not_lowercase_hex",
            Self::Version => "version",
            Self::ZeroTraceId => "zero_trace_id",
            Self::ZeroParentId => "zero_parent_id",
        }
    }
}

impl TraceParentError {
    /// The reason counted (in the writer's rejections) when an instrumented span's
    /// `traceparent` field is refused and the span starts a new trace instead.
    pub(crate) fn rejection(self) -> &'static str {
        match self {
            Self::TooLong => "traceparent refused (longer than 512 bytes): a new trace was started",
            Self::Length => "traceparent refused (wrong length): a new trace was started",
            Self::Separator => "traceparent refused (bad separators): a new trace was started",
            Self::NotLowerHex => "traceparent refused (not lowercase hex): a new trace was started",
            Self::Version => "traceparent refused (version ff): a new trace was started",
            Self::ZeroTraceId => "traceparent refused (all-zero trace id): a new trace was started",
            Self::ZeroParentId => {
                "traceparent refused (all-zero parent id): a new trace was started"
            }
        }
    }
}

impl fmt::Display for TraceParentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid traceparent: {}", self.as_str())
    }
}

impl std::error::Error for TraceParentError {}

/// The value of one lowercase hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Decodes `hex` (lowercase, even length) into `out`, which is half as long.
fn decode(hex: &[u8], out: &mut [u8]) -> Result<(), TraceParentError> {
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (Some(hi), Some(lo)) = (hex_digit(pair[0]), hex_digit(pair[1])) else {
            return Err(TraceParentError::NotLowerHex);
        };
        *byte = hi << 4 | lo;
    }
    Ok(())
}

impl TraceParent {
    /// Parses a `traceparent` header value strictly (surrounding spaces and tabs, which HTTP
    /// allows around a header value, are trimmed first). Never panics, whatever the input.
    pub fn parse(value: &str) -> Result<Self, TraceParentError> {
        let b = value.trim_matches([' ', '\t']).as_bytes();
        if b.len() > MAX_LEN {
            return Err(TraceParentError::TooLong);
        }
        if b.len() < V00_LEN {
            return Err(TraceParentError::Length);
        }
        // Every index below is under 55, the length just checked.
        if [2, 35, 52].iter().any(|&i| b[i] != b'-') {
            return Err(TraceParentError::Separator);
        }
        let mut version = [0u8; 1];
        decode(&b[..2], &mut version)?;
        match version[0] {
            0xff => return Err(TraceParentError::Version),
            0x00 if b.len() != V00_LEN => return Err(TraceParentError::Length),
            // A later version: more fields may follow, after a `-`.
            _ if b.len() > V00_LEN && b[V00_LEN] != b'-' => {
                return Err(TraceParentError::Length);
            }
            _ => {}
        }
        let mut trace = [0u8; 16];
        decode(&b[3..35], &mut trace)?;
        let mut parent = [0u8; 8];
        decode(&b[36..52], &mut parent)?;
        let mut flags = [0u8; 1];
        decode(&b[53..55], &mut flags)?;
        if trace == [0; 16] {
            return Err(TraceParentError::ZeroTraceId);
        }
        if parent == [0; 8] {
            return Err(TraceParentError::ZeroParentId);
        }
        Ok(Self {
            trace_id: TraceId(Uuid::from_bytes(trace)),
            parent_id: parent,
            flags: flags[0],
        })
    }

    /// The value for a span of ours: its trace, and its id's last 8 bytes (the `spans.span_id`
    /// column), sampled.
    pub fn of_span(trace_id: TraceId, span_id: SpanId) -> Self {
        Self {
            trace_id,
            parent_id: span_id.0.as_u64_pair().1.to_be_bytes(),
            flags: 0x01,
        }
    }

    /// The stored id of the parent span this value names: the trace id's first 8 bytes, then
    /// the parent id (the rule of our span ids). Equal to the trace id when the parent is the
    /// sender's root span.
    pub fn parent_uuid(&self) -> Uuid {
        let (high, _) = self.trace_id.0.as_u64_pair();
        Uuid::from_u64_pair(high, u64::from_be_bytes(self.parent_id))
    }

    /// Whether the sender sampled the trace (flag bit 0). Recorded here either way.
    pub fn sampled(&self) -> bool {
        self.flags & 0x01 != 0
    }
}

impl fmt::Display for TraceParent {
    /// The version-`00` form: `00-<32 hex>-<16 hex>-<2 hex>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-", self.trace_id)?;
        for b in self.parent_id {
            write!(f, "{b:02x}")?;
        }
        write!(f, "-{:02x}", self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_valid_value_round_trips() {
        let tp = TraceParent::parse(VALID).unwrap();
        assert_eq!(tp.trace_id.to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(
            tp.parent_id,
            [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]
        );
        assert!(tp.sampled());
        assert_eq!(tp.to_string(), VALID);
        let unsampled = TraceParent::parse(&VALID.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
        assert_eq!(TraceParent::parse(&format!(" {VALID}\t")).unwrap(), tp);
    }

    #[test]
    fn a_later_version_is_read_as_version_00() {
        let later = VALID.replacen("00", "01", 1);
        assert_eq!(TraceParent::parse(&later).unwrap().flags, 1);
        let extended = format!("{later}-what-comes-next");
        assert!(TraceParent::parse(&extended).is_ok());
        // Version 00 may not carry more fields.
        assert_eq!(
            TraceParent::parse(&format!("{VALID}-extra")),
            Err(TraceParentError::Length)
        );
        assert_eq!(
            TraceParent::parse(&format!("{later}x")),
            Err(TraceParentError::Length)
        );
    }

    #[test]
    fn hostile_values_are_refused_with_their_reason() {
        use TraceParentError::*;
        let cases: Vec<(String, TraceParentError)> = vec![
            (String::new(), Length),
            (VALID[..54].to_owned(), Length),
            (VALID.replacen("00", "ff", 1), Version),
            (VALID.replacen("00", "0g", 1), NotLowerHex),
            (VALID.to_uppercase(), NotLowerHex),
            (VALID.replace("0af7", "0AF7"), NotLowerHex),
            (VALID.replace("b7ad", "B7AD"), NotLowerHex),
            (VALID.replace('-', "_"), Separator),
            (
                "00-00000000000000000000000000000000-b7ad6b7169203331-01".to_owned(),
                ZeroTraceId,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01".to_owned(),
                ZeroParentId,
            ),
            (VALID.replace("-01", "-0x"), NotLowerHex),
            ("x".repeat(10 * 1024), TooLong),
            (format!("{VALID}{}", "-a".repeat(5_000)), TooLong),
            (VALID.replace("0af7", "0aé"), NotLowerHex),
            (VALID.replace("0af7", "0a\0f"), NotLowerHex),
            ("é".repeat(28), Separator),
            (
                "---------------------------------------------------------".to_owned(),
                NotLowerHex,
            ),
        ];
        for (value, reason) in cases {
            assert_eq!(
                TraceParent::parse(&value),
                Err(reason),
                "{:?}",
                value.get(..60).unwrap_or(&value)
            );
        }
    }

    #[test]
    fn one_changed_character_is_refused_unless_the_format_allows_it() {
        // Every cut of a valid value is too short.
        for end in 0..VALID.len() {
            assert_eq!(
                TraceParent::parse(&VALID[..end]),
                Err(TraceParentError::Length)
            );
        }
        // Each character replaced by characters of every class: accepted only where the
        // replacement is what that position may hold.
        for i in 0..VALID.len() {
            let separator = [2, 35, 52].contains(&i);
            for c in ['-', 'A', 'f', '7', '\0', 'é', '€', '𝄞', ' ', 'g'] {
                let mut s = VALID[..i].to_owned();
                s.push(c);
                s.push_str(&VALID[i + 1..]);
                let allowed = if separator {
                    c == '-'
                } else {
                    c.is_ascii_digit() || ('a'..='f').contains(&c)
                };
                assert_eq!(TraceParent::parse(&s).is_ok(), allowed, "{s:?}");
            }
        }
    }

    #[test]
    fn our_spans_give_their_stored_ids() {
        let trace = TraceId::new();
        let span = SpanId::new();
        let tp = TraceParent::of_span(trace, span);
        // The header's fields are the `traces.trace_id` and `spans.span_id` columns' text.
        assert_eq!(
            tp.to_string(),
            format!("00-{trace}-{span}-01"),
            "trace id and span id as Display prints them"
        );
        assert_eq!(TraceParent::parse(&tp.to_string()).unwrap(), tp);
    }
}
