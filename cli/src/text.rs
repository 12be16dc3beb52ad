//! Text for the terminal: numbers grouped, durations in a readable unit, stored text cut to
//! its column and stripped of control characters.

/// `0.42 ms`, `12.3 ms`, `1,234 ms`, `83.2 s`.
pub fn fmt_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else if ms < 60_000.0 {
        format!("{} ms", group(ms.round() as i64))
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// `1234567` as `1,234,567`.
pub fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// `s` padded or cut (with `…`) to exactly `width` characters.
pub fn fit(s: &str, width: usize) -> String {
    let s = cut(s, width);
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

/// `s` cut (with `…`) to at most `max` characters.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The first line of `s`, cut to `max` characters, control characters dropped (stored text
/// must not drive the terminal).
pub fn one_line(s: &str, max: usize) -> String {
    let first = s.lines().next().unwrap_or("");
    let clean: String = first.chars().filter(|c| !c.is_control()).collect();
    cut(&clean, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(-1000), "-1,000");
        assert_eq!(group(12), "12");
        assert_eq!(fmt_ms(0.4219), "0.42 ms");
        assert_eq!(fmt_ms(12.34), "12.3 ms");
        assert_eq!(fmt_ms(1234.4), "1,234 ms");
        assert_eq!(fmt_ms(83_200.0), "83.2 s");
    }

    #[test]
    fn names_are_fitted_to_their_column_and_messages_to_one_line() {
        assert_eq!(fit("abc", 5), "abc  ");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(one_line("first\nsecond", 80), "first");
        assert_eq!(one_line("a\u{1b}[31mb", 80), "a[31mb");
    }
}
