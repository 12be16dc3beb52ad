//! JSON text for a `jsonb` column, written straight into the writer's `COPY` buffer in the
//! order the server stores it.
//!
//! `jsonb` keeps an object's keys sorted, shortest first and then bytewise, and keeps only the
//! last value of a repeated key. The server sorts the pairs of every object it parses, so
//! keys sent in that order already cost it a single pass to check, for a fraction of that
//! work here (figures in `BENCHMARKS.md`, "Figures behind code choices").

use std::cmp::Ordering;

use smallvec::{Array, SmallVec};

/// `jsonb`'s order of object keys: the shorter key first, keys of one length bytewise.
fn key_order(a: &str, b: &str) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Puts an object's entries in `jsonb`'s key order and keeps, of a repeated key, only the
/// value `jsonb` would keep: the last one given. `key` tells an entry's key.
pub(crate) fn sort_keys<'k, A, F>(entries: &mut SmallVec<A>, key: F)
where
    A: Array,
    F: Fn(&A::Item) -> &'k str,
{
    // An insertion sort: an object has a few keys, often in order already. It is stable (an
    // entry moves only past greater keys), so repeated keys stay in the order given.
    let mut repeated = false;
    let slice = entries.as_mut_slice();
    for i in 1..slice.len() {
        let mut j = i;
        while j > 0 {
            match key_order(key(&slice[j - 1]), key(&slice[j])) {
                Ordering::Greater => slice.swap(j - 1, j),
                Ordering::Equal => {
                    repeated = true;
                    break;
                }
                Ordering::Less => break,
            }
            j -= 1;
        }
    }
    if repeated {
        entries.dedup_by(|later, kept| {
            if key(later) != key(kept) {
                return false;
            }
            // The later value takes the place of the one kept so far.
            std::mem::swap(later, kept);
            true
        });
    }
}

/// The bytes JSON cannot hold as they are in a string: control characters, `"` and `\`.
static ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Writes `s` as a JSON string, escaped exactly as `serde_json` escapes it.
pub(crate) fn write_str(buf: &mut Vec<u8>, s: &str) {
    // Keys and labels seldom need escaping: tell, then copy them whole.
    if s.bytes().any(|b| ESCAPED[usize::from(b)]) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, s);
    } else {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_shortest_first_then_bytewise_and_the_last_of_a_repeated_key_stays() {
        let mut entries: SmallVec<[(&str, u32); 8]> = SmallVec::from_vec(vec![
            ("route", 1),
            ("attempt", 2),
            ("score", 3),
            ("b", 4),
            ("route", 5),
            ("é", 6),
            ("Z", 7),
            ("route", 8),
        ]);
        sort_keys(&mut entries, |e| e.0);
        assert_eq!(
            entries.as_slice(),
            [
                ("Z", 7),
                ("b", 4),
                ("é", 6), // two bytes
                ("route", 8),
                ("score", 3),
                ("attempt", 2),
            ]
        );
        // Sorted already: left as it is.
        let mut sorted: SmallVec<[(&str, u32); 8]> =
            SmallVec::from_vec(vec![("b", 1), ("ab", 2), ("ac", 3)]);
        sort_keys(&mut sorted, |e| e.0);
        assert_eq!(sorted.as_slice(), [("b", 1), ("ab", 2), ("ac", 3)]);
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in [
            "",
            "/v1/chat",
            "quote\"back\\slash",
            "tab\tnl\n\u{1f}",
            "\u{7f} del is not escaped",
            "café ✓ 😀",
            "\u{0}",
        ] {
            let mut ours = Vec::new();
            write_str(&mut ours, s);
            assert_eq!(
                ours,
                serde_json::to_vec(s).expect("a string serialises"),
                "{s:?}"
            );
        }
    }
}
