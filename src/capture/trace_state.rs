//! What one trace remembers while it runs, shared by every clone of its
//! [`TraceContext`](crate::TraceContext): its header, running totals and open explicit spans.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::model::kinds::{OperationType, SpanType};
use crate::model::rows::Text;
use crate::model::traceparent::TraceParent;

/// What a trace needs to remember between its start and its end, shared by every clone of its
/// [`TraceContext`]: its header, its running token and cost totals, and the spans opened with
/// [`start_span`](crate::ObservabilityProvider::start_span) and not yet ended.
#[derive(Debug, Default)]
pub(crate) struct TraceState {
    pub(crate) header: Mutex<Option<TraceHeader>>,
    /// Set by the first `end_trace`: a second one is refused.
    pub(crate) ended: AtomicBool,
    pub(crate) totals: Totals,
    pub(crate) open_spans: Mutex<HashMap<Uuid, OpenSpan>>,
    /// The `traceparent` this process's part of the trace came in with: set for a trace that
    /// another process started, whose `traces` row is that process's to write.
    pub(crate) remote: Option<TraceParent>,
    /// The `tracestate` that came with [`remote`](Self::remote), given back unchanged.
    pub(crate) tracestate: OnceLock<String>,
    /// The trace's context was handed out (`traceparent()`): other processes may add parts
    /// to it, so its origin writes its own part and its row's totals are the parts' sum.
    pub(crate) distributed: AtomicBool,
}

impl TraceState {
    /// The state of this process's part of a remote trace.
    pub(crate) fn joined(remote: TraceParent) -> Self {
        Self {
            remote: Some(remote),
            ..Self::default()
        }
    }

    /// Whether the trace's context was handed out to other processes.
    pub(crate) fn is_distributed(&self) -> bool {
        self.distributed.load(Ordering::Relaxed)
    }
}

/// The fields given to `start_trace`, kept so `end_trace` can write the full row.
#[derive(Debug, Clone)]
pub(crate) struct TraceHeader {
    pub(crate) name: String,
    pub(crate) operation_type: OperationType,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) metadata: serde_json::Value,
}

/// A span opened by `start_span` and not yet ended.
#[derive(Debug, Clone)]
pub(crate) struct OpenSpan {
    pub(crate) name: Text,
    pub(crate) span_type: SpanType,
    pub(crate) parent_span_id: Option<Uuid>,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) metadata: serde_json::Value,
    /// A span below this one reported usage: this span's own usage is not counted again.
    pub(crate) usage_below: bool,
}

/// Token and cost totals of one trace, added to by its spans as they are logged.
///
/// Cost is kept in micro-dollars so it can be added atomically without rounding drift.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) prompt_tokens: AtomicI64,
    pub(crate) completion_tokens: AtomicI64,
    pub(crate) cost_micros: AtomicI64,
    pub(crate) has_cost: AtomicBool,
}

impl Totals {
    pub(crate) fn add(
        &self,
        prompt: Option<i64>,
        completion: Option<i64>,
        cost_micros: Option<i64>,
    ) {
        // Sums saturate at i64::MAX rather than wrap: a wrapped total would be a wrong number
        // stored without a word.
        fn add(total: &AtomicI64, v: i64) {
            let _ = total.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(v.max(0)))
            });
        }
        if let Some(p) = prompt {
            add(&self.prompt_tokens, p);
        }
        if let Some(c) = completion {
            add(&self.completion_tokens, c);
        }
        if let Some(c) = cost_micros {
            add(&self.cost_micros, c);
            self.has_cost.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> (i64, i64, Option<i64>) {
        let p = self.prompt_tokens.load(Ordering::Relaxed);
        let c = self.completion_tokens.load(Ordering::Relaxed);
        let cost = self
            .has_cost
            .load(Ordering::Relaxed)
            .then(|| self.cost_micros.load(Ordering::Relaxed));
        (p, c, cost)
    }
}
