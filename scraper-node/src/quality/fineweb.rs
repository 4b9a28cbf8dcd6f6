//! FineWeb's own rules (Penedo et al. 2024, datatrove's `FineWebQualityFilter`): enough lines
//! ending in punctuation, not mostly short lines, little repeated line text, and not a list.

use serde::{Deserialize, Serialize};

use super::{gopher::duplicates, words::tokens};

/// FineWeb's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FineWeb {
    /// Whether the rules run.
    pub enabled: bool,
    /// Pages whose share of lines ending in `.`, `'`, `"`, `!` or `?` is at most this go.
    pub line_punct_thr: f64,
    /// Keep pages with no such line at all (off in FineWeb).
    pub line_punct_exclude_zero: bool,
    /// Pages whose share of short lines is at least this go.
    pub short_line_thr: f64,
    /// A short line's most characters.
    pub short_line_length: usize,
    /// Pages whose characters in repeated lines reach this share go.
    pub char_duplicates_ratio: f64,
    /// Pages with more newlines per word than this go.
    pub new_line_ratio: f64,
}

impl Default for FineWeb {
    fn default() -> Self {
        Self {
            enabled: true,
            line_punct_thr: 0.12,
            line_punct_exclude_zero: false,
            short_line_thr: 0.67,
            short_line_length: 30,
            char_duplicates_ratio: 0.01,
            new_line_ratio: 0.3,
        }
    }
}

impl FineWeb {
    /// Why `text` fails the rules, or `None` when it passes.
    pub fn check(&self, text: &str) -> Option<&'static str> {
        self.check_words(text, tokens(text).len())
    }

    /// [`FineWeb::check`] of `text` of `words` tokens.
    pub fn check_words(&self, text: &str, words: usize) -> Option<&'static str> {
        let lines: Vec<&str> = text.split('\n').collect();
        let n = lines.len() as f64;
        let stops = lines
            .iter()
            .filter(|l| l.ends_with(['.', '\'', '"', '!', '?']))
            .count();
        let ratio = stops as f64 / n;
        if ratio <= self.line_punct_thr && !(stops == 0 && self.line_punct_exclude_zero) {
            return Some("line_punct_ratio");
        }
        let short = lines
            .iter()
            .filter(|l| l.chars().count() <= self.short_line_length)
            .count();
        if short as f64 / n >= self.short_line_thr {
            return Some("short_line_ratio");
        }
        let (_, repeated) = duplicates(lines.iter().copied().filter(|l| !l.trim().is_empty()));
        let chars = text.chars().filter(|&c| c != '\n').count().max(1);
        if repeated as f64 / chars as f64 >= self.char_duplicates_ratio {
            return Some("char_dup_ratio");
        }
        if text.matches('\n').count() as f64 / words.max(1) as f64 > self.new_line_ratio {
            return Some("list_ratio");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentence(i: usize) -> String {
        format!("Sentence number {i} says something long enough to count as prose.")
    }

    #[test]
    fn rules_follow_finewebs_thresholds() {
        let f = FineWeb::default();
        let good: Vec<String> = (0..10).map(sentence).collect();
        assert_eq!(f.check(&good.join("\n")), None);
        // 1 of 10 lines ends in punctuation: 0.1 <= 0.12.
        let mut unpunctuated: Vec<String> = (0..10)
            .map(|i| format!("heading number {i} without any stop at the end of it"))
            .collect();
        unpunctuated[0] = sentence(0);
        assert_eq!(f.check(&unpunctuated.join("\n")), Some("line_punct_ratio"));
        // 7 of 10 lines short.
        let mut short = good.clone();
        for line in short.iter_mut().take(7) {
            *line = "Short.".into();
        }
        assert_eq!(f.check(&short.join("\n")), Some("short_line_ratio"));
        // One long line repeated: over 1% of the characters.
        let mut dup = good.clone();
        dup[9] = dup[0].clone();
        assert_eq!(f.check(&dup.join("\n")), Some("char_dup_ratio"));
        // Many lines of few words: more than 0.3 newlines per word.
        let list: Vec<String> = (0..20)
            .map(|i| format!("Item {i} is this one here, on a line of its own."))
            .collect();
        assert_eq!(f.check(&list.join("\n")), None);
        let list: Vec<String> = (0..20).map(|i| format!("Item number{i}!")).collect();
        assert_eq!(f.check(&list.join("\n")), Some("short_line_ratio"));
        let f = FineWeb {
            short_line_thr: 1.1,
            ..FineWeb::default()
        };
        assert_eq!(f.check(&list.join("\n")), Some("list_ratio"));
    }
}
