//! When production did not keep up with its schedule, the words every view shows: the table,
//! the page's verdict (and the worker's log, from the same [`saturation_words`]).

use crate::model::report::{saturation_words, Summary};

/// The page's note under the verdict banner, or nothing when production kept up.
pub fn html_note(s: &Summary) -> String {
    match saturation_words(s) {
        Some(words) => {
            let mut out = String::from("<div class=\"reason saturation\" id=\"saturation\">");
            for c in words.chars() {
                match c {
                    '&' => out.push_str("&amp;"),
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    '"' => out.push_str("&quot;"),
                    '\'' => out.push_str("&#39;"),
                    c => out.push(c),
                }
            }
            out.push_str("</div>\n");
            out
        }
        None => String::new(),
    }
}
