//! Texts that come from outside, kept to a size before they are logged or stored; and counts
//! in words ([`count`]: "1 task", "2 tasks"); an instant as operators read it ([`utc`]).
//!
//! A portal may answer an error whose `error_description` is megabytes long (a proxy's HTML
//! page, a hostile portal). Such a text would go whole into log lines, the queue record and
//! `/admin/jobs`. [`cut`] keeps its head, on a character boundary, and says it was cut and from
//! what size. The REST client cuts at the edge ([`ERROR_TEXT_MAX`]); the store cuts again
//! what it records as a job's last error ([`STORED_ERROR_MAX`]), for any text that did not come
//! through the client.

use std::borrow::Cow;

/// Bytes kept of one text the portal sent (an error description, a transport message).
pub const ERROR_TEXT_MAX: usize = 2 * 1024;

/// Bytes kept of an error the store records. Larger than [`ERROR_TEXT_MAX`]: a recorded error
/// is a composed message (method, status, code and the already cut description), so a text cut
/// at the edge is never cut a second time (which would lose the original size it reports).
pub const STORED_ERROR_MAX: usize = 2 * ERROR_TEXT_MAX;

/// `text` if it is at most `max` bytes; else its first `max` bytes at most (never splitting a
/// character) followed by `… [cut from N bytes]`, N being the length of `text`.
#[must_use]
pub fn cut(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… [cut from {} bytes]", &text[..end], text.len()))
}

/// `n` with the noun in the number it takes in English: `count(1, "task", "tasks")` is
/// "1 task", `count(2, ...)` "2 tasks".
#[must_use]
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `at` in RFC 3339, UTC, to the second: `2026-12-03T06:40:00Z`.
#[must_use]
pub fn utc(at: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_of_one_takes_the_singular() {
        assert_eq!(count(1, "task", "tasks"), "1 task");
        assert_eq!(count(0, "task", "tasks"), "0 tasks");
        assert_eq!(count(21, "deal", "deals"), "21 deals");
    }

    #[test]
    fn a_short_text_is_kept_as_it_is() {
        assert!(matches!(cut("Not found", 16), Cow::Borrowed("Not found")));
        assert_eq!(cut("", 0), "");
        assert_eq!(cut("exactly16bytes!!", 16), "exactly16bytes!!");
    }

    #[test]
    fn a_long_text_keeps_its_head_and_says_it_was_cut_from_what_size() {
        let text = "x".repeat(5 * 1024 * 1024);
        let kept = cut(&text, ERROR_TEXT_MAX);
        assert_eq!(
            kept,
            format!("{}… [cut from 5242880 bytes]", "x".repeat(ERROR_TEXT_MAX))
        );
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // Two bytes per letter: a cut at an odd byte would split one.
        let text = "Ошибка".repeat(1000);
        for max in [0, 1, 2, 3, 2047, 2048] {
            let kept = cut(&text, max);
            let head = kept.split('…').next().expect("a head");
            assert!(head.len() <= max, "{max}: {}", head.len());
            assert!(head.len() + 1 >= max, "{max}: at most one byte lost");
            assert!(kept.ends_with("[cut from 12000 bytes]"), "{kept}");
        }
        let emoji = "🦀".repeat(10);
        assert_eq!(cut(&emoji, 5), "🦀… [cut from 40 bytes]");
    }
}
