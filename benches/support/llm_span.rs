//! The hot-path benchmark's third workload, shared with the ingest bench's `hot-llm` mode so
//! both profile the same span.

use std::hint::black_box;

/// An LLM span with six fields, four declared `field::Empty` and recorded late with
/// `Span::record`; `prompt_tokens` is the one value a caller may vary.
pub fn llm_span_late_record(prompt_tokens: i64) {
    let span = tracing::info_span!(
        "llm",
        model = black_box("gpt-4o-mini"),
        temperature = black_box(0.2_f64),
        prompt_tokens = tracing::field::Empty,
        completion_tokens = tracing::field::Empty,
        input_preview = tracing::field::Empty,
        output_preview = tracing::field::Empty,
    );
    let _entered = span.enter();
    span.record(
        "input_preview",
        black_box("How long do refunds take for an order paid by card?"),
    );
    span.record("prompt_tokens", black_box(prompt_tokens));
    span.record("completion_tokens", black_box(80_i64));
    span.record(
        "output_preview",
        black_box("Refunds are processed within 5 business days [1]."),
    );
}
