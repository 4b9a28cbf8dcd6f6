//! C4's rules (Raffel et al. 2020), as FineWeb ran them (datatrove's `C4QualityFilter` with
//! `filter_no_terminal_punct=False`): lines without enough words, with a word over 1000
//! characters, naming JavaScript or a cookie or terms-of-use policy are removed, citation
//! marks are cut; a page with "lorem ipsum" or a curly bracket, or with fewer than five
//! sentences left, is dropped.

use serde::{Deserialize, Serialize};

use super::words::sentences;

/// C4's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct C4 {
    /// Whether the rules run.
    pub enabled: bool,
    /// Remove lines that do not end in `.`, `?`, `!`, `"` or `'` (off in FineWeb).
    pub filter_no_terminal_punct: bool,
    /// Fewest sentences left on a page.
    pub min_num_sentences: usize,
    /// Fewest words on a line.
    pub min_words_per_line: usize,
    /// Longest word on a line, in characters.
    pub max_word_length: usize,
    /// Drop pages with "lorem ipsum".
    pub filter_lorem_ipsum: bool,
    /// Remove lines naming JavaScript.
    pub filter_javascript: bool,
    /// Drop pages with a `{`.
    pub filter_curly_bracket: bool,
    /// Remove lines about cookies or terms of use.
    pub filter_policy: bool,
}

impl Default for C4 {
    fn default() -> Self {
        Self {
            enabled: true,
            filter_no_terminal_punct: false,
            min_num_sentences: 5,
            min_words_per_line: 3,
            max_word_length: 1000,
            filter_lorem_ipsum: true,
            filter_javascript: true,
            filter_curly_bracket: true,
            filter_policy: true,
        }
    }
}

const POLICY: [&str; 6] = [
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
];

/// `[1]`, `[]`, `[edit]` and `[citation needed]` cut from a line.
fn cut_citations(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find(']');
        let cut = close.filter(|&c| {
            let inner = &after[..c];
            inner.bytes().all(|b| b.is_ascii_digit())
                || inner == "edit"
                || inner == "citation needed"
        });
        match cut {
            Some(c) => rest = &after[c + 1..],
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

impl C4 {
    /// The page's text with C4's lines removed, or why the whole page goes.
    pub fn apply(&self, text: &str) -> Result<String, &'static str> {
        let mut kept: Vec<String> = Vec::new();
        let mut count = 0;
        for line in text.lines() {
            let line = line.trim();
            let words: Vec<&str> = line.split_whitespace().collect();
            if words
                .iter()
                .any(|w| w.chars().count() > self.max_word_length)
            {
                continue;
            }
            let line = cut_citations(line);
            if self.filter_no_terminal_punct
                && (!line.ends_with(['.', '?', '!', '"', '\'']) || line.ends_with("..."))
            {
                continue;
            }
            if words.len() < self.min_words_per_line {
                continue;
            }
            let lower = line.to_lowercase();
            if self.filter_lorem_ipsum && lower.contains("lorem ipsum") {
                return Err("lorem_ipsum");
            }
            if self.filter_javascript && lower.contains("javascript") {
                continue;
            }
            if self.filter_curly_bracket && line.contains('{') {
                return Err("curly_bracket");
            }
            if self.filter_policy && POLICY.iter().any(|p| lower.contains(p)) {
                continue;
            }
            count += sentences(&line);
            kept.push(line);
        }
        if count < self.min_num_sentences {
            return Err("too_few_sentences");
        }
        Ok(kept.join("\n").trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_go_and_pages_drop_as_c4_says() {
        let c4 = C4::default();
        let text = "First real sentence here. Second one follows.\n\
                    Menu\n\
                    Enable JavaScript to see the comments below.\n\
                    This site uses cookies to improve your visit.\n\
                    A cited claim stands[1] and an edit mark[edit] goes.\n\
                    Three more words. And more. Still more.";
        let kept = c4.apply(text).unwrap();
        assert_eq!(
            kept,
            "First real sentence here. Second one follows.\n\
             A cited claim stands and an edit mark goes.\n\
             Three more words. And more. Still more."
        );
        assert_eq!(
            c4.apply("Only one sentence here."),
            Err("too_few_sentences")
        );
        assert_eq!(
            c4.apply(&format!("{text}\nLorem ipsum dolor sit amet.")),
            Err("lorem_ipsum")
        );
        assert_eq!(
            c4.apply(&format!("{text}\nfunction f() {{ return 1; }}")),
            Err("curly_bracket")
        );
        let huge = format!("{text}\nthe word {} is long", "x".repeat(1001));
        assert_eq!(c4.apply(&huge).unwrap(), kept);
        // With terminal punctuation required, the line without it goes too.
        let strict = C4 {
            filter_no_terminal_punct: true,
            min_num_sentences: 1,
            ..C4::default()
        };
        assert_eq!(
            strict
                .apply("Ends with a stop.\nno stop at the end")
                .unwrap(),
            "Ends with a stop."
        );
    }
}
