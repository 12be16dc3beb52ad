//! SQL text the queries share: select lists that read odd timestamps safely, and `LIKE`
//! patterns for text search.

/// A select list: the columns but those in `skip`, with each timestamp column clamped to years
/// 1 to 9999, so a hand-written `infinity` in the table reads as a far date instead of failing
/// to decode.
pub(super) fn select_list(columns: &[&str], timestamps: &[&str], skip: &[&str]) -> String {
    columns
        .iter()
        .filter(|c| !skip.contains(c))
        .map(|c| {
            if timestamps.contains(c) {
                format!(
                    "least(greatest({c}, '0001-01-01 00:00:00+00'), '9999-12-31 00:00:00+00') AS {c}"
                )
            } else {
                (*c).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `text` as a `LIKE` pattern matching it anywhere, its wildcards escaped.
pub(super) fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_search_text_match_themselves() {
        assert_eq!(contains_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn timestamp_columns_are_clamped_skipped_ones_left_out_and_others_kept() {
        let s = select_list(
            &["id", "span_id", "started_at"],
            &["started_at"],
            &["span_id"],
        );
        assert!(s.starts_with("id, least(greatest(started_at,"));
        assert!(s.ends_with("AS started_at"));
    }
}
