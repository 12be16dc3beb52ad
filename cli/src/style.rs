//! The few styles the viewer uses; `anstream` drops them when colour is off.

use anstyle::{AnsiColor, Style};

pub const ERROR: Style = AnsiColor::Red.on_default().bold();
pub const WARN: Style = AnsiColor::Yellow.on_default();
pub const OK: Style = AnsiColor::Green.on_default();
pub const DIM: Style = Style::new().dimmed();
pub const BOLD: Style = Style::new().bold();

/// The bar colour of a span type.
pub fn of_type(span_type: &str) -> Style {
    match span_type {
        "llm" => AnsiColor::Magenta.on_default(),
        "embedding" => AnsiColor::Blue.on_default(),
        "retrieval" | "rerank" => AnsiColor::Cyan.on_default(),
        "parse" | "chunk" | "index" => AnsiColor::Yellow.on_default(),
        _ => AnsiColor::White.on_default(),
    }
}

/// The style of a status.
pub fn of_status(status: &str) -> Style {
    match status {
        "error" => ERROR,
        "in_progress" => WARN,
        _ => OK,
    }
}

/// `text` in `style`.
pub fn paint(style: Style, text: impl std::fmt::Display) -> String {
    format!("{style}{text}{style:#}")
}
