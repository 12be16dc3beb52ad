//! A trace drawn as a waterfall: the span tree on the left, each span's time as a bar on a
//! common axis, then duration, tokens, cost and the error, if any.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use tracing_postgres::query::{Span, TraceTree};

use crate::style::{self, paint};
use crate::text::{fit, fmt_ms, group, one_line};

/// Widest name column (tree drawing included).
const NAME_WIDTH: usize = 34;
const TYPE_WIDTH: usize = 10;

/// The waterfall of `tree`, bars `width` columns wide.
pub fn render(tree: &TraceTree, width: usize) -> String {
    let mut out = String::new();
    let Some((start, end)) = tree.bounds() else {
        return out;
    };
    let total_ms = ms_between(start, end).max(0.001);
    header(&mut out, tree, total_ms);
    let walked = tree.walk();
    let prefixes = tree_prefixes(&walked.iter().map(|(d, _)| *d).collect::<Vec<_>>());
    // Axis.
    let _ = writeln!(
        out,
        "{:<nw$} {:<tw$} {}",
        "",
        "",
        paint(style::DIM, axis(width, total_ms)),
        nw = NAME_WIDTH,
        tw = TYPE_WIDTH
    );
    for ((_, span), prefix) in walked.iter().zip(prefixes) {
        line(&mut out, span, &prefix, start, end, total_ms, width);
    }
    out
}

fn header(out: &mut String, tree: &TraceTree, total_ms: f64) {
    let (name, op, status, id) = match &tree.trace {
        Some(t) => (
            t.name.as_str(),
            t.operation_type.as_str(),
            t.status.as_str(),
            t.w3c_id(),
        ),
        None => (
            "(trace row not stored)",
            "?",
            "?",
            tree.spans
                .first()
                .map(|s| s.trace_id.simple().to_string())
                .unwrap_or_default(),
        ),
    };
    let _ = write!(
        out,
        "{} {} {}  {}  {}",
        paint(style::BOLD, one_line(name, 120)),
        paint(style::DIM, format!("({op})")),
        paint(style::DIM, id),
        paint(style::of_status(status), status),
        fmt_ms(total_ms)
    );
    if let Some(t) = &tree.trace {
        if let Some(tokens) = t
            .total_tokens
            .or(t.prompt_tokens.zip(t.completion_tokens).map(|(p, c)| p + c))
        {
            let _ = write!(out, "  {} tokens", group(tokens));
        }
        if let Some(cost) = t.total_cost_usd {
            let _ = write!(out, "  ${cost}");
        }
        let _ = write!(out, "  {} spans", tree.spans.len());
        let _ = writeln!(
            out,
            "  {}",
            paint(style::DIM, t.started_at.format("%F %T%.3f UTC"))
        );
        if let Some(msg) = t.error_message.as_deref().or(t.error_type.as_deref()) {
            let _ = writeln!(out, "  {}", paint(style::ERROR, one_line(msg, 160)));
        }
    } else {
        let _ = writeln!(out);
    }
}

fn line(
    out: &mut String,
    span: &Span,
    prefix: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    total_ms: f64,
    width: usize,
) {
    let label = fit(
        &format!("{prefix}{}", one_line(&span.name, NAME_WIDTH)),
        NAME_WIDTH,
    );
    let offset_ms = ms_between(start, span.started_at);
    let dur_ms = span
        .duration_ms
        .or_else(|| span.ended_at.map(|e| ms_between(span.started_at, e)))
        .unwrap_or_else(|| ms_between(span.started_at, end));
    let from = ((offset_ms / total_ms) * width as f64).floor() as usize;
    let from = from.min(width.saturating_sub(1));
    let len = (((dur_ms / total_ms) * width as f64).round() as usize).clamp(1, width - from);
    let bar_style = if span.status == "error" {
        style::ERROR
    } else {
        style::of_type(&span.span_type)
    };
    let bar = format!(
        "{}{}{}",
        " ".repeat(from),
        paint(bar_style, "█".repeat(len)),
        " ".repeat(width - from - len)
    );
    let _ = write!(
        out,
        "{label} {} {bar} {:>10}",
        paint(
            style::DIM,
            fit(&one_line(&span.span_type, TYPE_WIDTH), TYPE_WIDTH)
        ),
        fmt_ms(dur_ms)
    );
    if let Some(model) = span.model.as_deref().or(span.embedding_model.as_deref()) {
        let _ = write!(out, "  {}", one_line(model, 32));
    }
    if let Some(tokens) = span.tokens() {
        let _ = write!(out, "  {} tok", group(tokens));
    }
    if let Some(cost) = span.cost_usd {
        let _ = write!(out, "  ${}", cost.normalize());
    }
    if let Some(n) = span.result_count {
        let _ = write!(out, "  {n} results");
    }
    if span.status == "in_progress" {
        let _ = write!(out, "  {}", paint(style::WARN, "in progress"));
    }
    if span.status == "error" {
        let what = match (&span.error_type, &span.error_message) {
            (Some(t), Some(m)) => format!("{t}: {m}"),
            (Some(t), None) => t.clone(),
            (None, Some(m)) => m.clone(),
            (None, None) => "error".to_owned(),
        };
        let _ = write!(out, "  {}", paint(style::ERROR, one_line(&what, 80)));
    }
    out.push('\n');
}

/// The tree drawing before each span's name, from the depths of the spans in tree order:
/// `├─ ` / `└─ ` before a child, `│  ` where an ancestor has siblings still to come.
fn tree_prefixes(depths: &[usize]) -> Vec<String> {
    (0..depths.len())
        .map(|i| {
            let d = depths[i];
            let mut p = String::new();
            for level in 1..=d {
                // Is there a later span at `level` before the tree climbs above it?
                let more = depths[i + 1..]
                    .iter()
                    .take_while(|&&x| x >= level)
                    .any(|&x| x == level);
                if level == d {
                    p.push_str(if more { "├─ " } else { "└─ " });
                } else {
                    p.push_str(if more { "│  " } else { "   " });
                }
            }
            p
        })
        .collect()
}

/// `0 ms` at the left of the bars, the total at the right.
fn axis(width: usize, total_ms: f64) -> String {
    let left = "0";
    let right = fmt_ms(total_ms);
    let gap = width.saturating_sub(left.len() + right.len());
    format!("{left}{}{right}", " ".repeat(gap))
}

fn ms_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a)
        .num_microseconds()
        .map_or(0.0, |us| us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_prefixes_draw_branches_and_continuations() {
        // a, a/b, a/b/c, a/d, e
        let p = tree_prefixes(&[0, 1, 2, 1, 0]);
        assert_eq!(p, ["", "├─ ", "│  └─ ", "└─ ", ""]);
    }
}
