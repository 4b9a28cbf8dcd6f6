//! Gopher's quality and repetition rules (Rae et al. 2021, Table A1), with the thresholds
//! FineWeb ran them with (datatrove's `GopherQualityFilter` and `GopherRepetitionFilter`).

use std::hash::BuildHasher as _;

use foldhash::{HashSet, HashSetExt as _, fast::FixedState};
use hashbrown::HashTable;

use serde::{Deserialize, Serialize};

use super::words::{is_punctuation, tokens};

/// Gopher's quality rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GopherQuality {
    /// Whether the rules run.
    pub enabled: bool,
    /// Fewest words (punctuation not counted).
    pub min_doc_words: usize,
    /// Most words.
    pub max_doc_words: usize,
    /// Shortest mean word length, in characters.
    pub min_avg_word_length: f64,
    /// Longest mean word length.
    pub max_avg_word_length: f64,
    /// Most `#`, and most ellipses, per word.
    pub max_symbol_word_ratio: f64,
    /// Most lines starting with a bullet, as a fraction of lines.
    pub max_bullet_lines_ratio: f64,
    /// Most lines ending with an ellipsis.
    pub max_ellipsis_lines_ratio: f64,
    /// Fewest words holding a letter, per word.
    pub min_alpha_words_ratio: f64,
    /// Fewest stop words ("the", "be", "to", "of", "and", "that", "have", "with").
    pub min_stop_words: usize,
}

impl Default for GopherQuality {
    fn default() -> Self {
        Self {
            enabled: true,
            min_doc_words: 50,
            max_doc_words: 100_000,
            min_avg_word_length: 3.0,
            max_avg_word_length: 10.0,
            max_symbol_word_ratio: 0.1,
            max_bullet_lines_ratio: 0.9,
            max_ellipsis_lines_ratio: 0.3,
            min_alpha_words_ratio: 0.8,
            min_stop_words: 2,
        }
    }
}

const STOP_WORDS: [&str; 8] = ["the", "be", "to", "of", "and", "that", "have", "with"];

impl GopherQuality {
    /// Why `text` fails the rules, or `None` when it passes.
    pub fn check(&self, text: &str) -> Option<&'static str> {
        self.check_words(text, &tokens(text))
    }

    /// [`GopherQuality::check`] of `text` whose tokens are `words`.
    pub fn check_words(&self, text: &str, words: &[&str]) -> Option<&'static str> {
        let counted: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| !is_punctuation(w))
            .collect();
        let n = counted.len();
        if n < self.min_doc_words {
            return Some("gopher_short_doc");
        }
        if n > self.max_doc_words {
            return Some("gopher_long_doc");
        }
        let nf = n.max(1) as f64;
        let mean = counted.iter().map(|w| w.chars().count()).sum::<usize>() as f64 / nf;
        if mean < self.min_avg_word_length {
            return Some("gopher_below_avg_threshold");
        }
        if mean > self.max_avg_word_length {
            return Some("gopher_above_avg_threshold");
        }
        // The ratios below are over every token, punctuation included, as datatrove has them.
        let all = words.len().max(1) as f64;
        if text.matches('#').count() as f64 / all > self.max_symbol_word_ratio {
            return Some("gopher_too_many_hashes");
        }
        let ellipses = text.matches("...").count() + text.matches('…').count();
        if ellipses as f64 / all > self.max_symbol_word_ratio {
            return Some("gopher_too_many_ellipsis");
        }
        let lines: Vec<&str> = text.lines().collect();
        let lines_n = lines.len().max(1) as f64;
        let bullets = lines
            .iter()
            .map(|l| l.trim_start())
            .filter(|l| l.starts_with('•') || l.starts_with('-'))
            .count();
        if bullets as f64 / lines_n > self.max_bullet_lines_ratio {
            return Some("gopher_too_many_bullets");
        }
        let trailing = lines
            .iter()
            .map(|l| l.trim_end())
            .filter(|l| l.ends_with("...") || l.ends_with('…'))
            .count();
        if trailing as f64 / lines_n > self.max_ellipsis_lines_ratio {
            return Some("gopher_too_many_end_ellipsis");
        }
        let alpha = words
            .iter()
            .filter(|w| w.chars().any(char::is_alphabetic))
            .count();
        if (alpha as f64 / all) < self.min_alpha_words_ratio {
            return Some("gopher_below_alpha_threshold");
        }
        // Distinct stop words: "the" a hundred times is one.
        let stop: HashSet<&str> = words
            .iter()
            .copied()
            .filter(|w| STOP_WORDS.contains(w))
            .collect();
        if stop.len() < self.min_stop_words {
            return Some("gopher_enough_stop_words");
        }
        None
    }
}

/// Gopher's repetition rules: duplicated paragraphs, lines and n-grams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GopherRepetition {
    /// Whether the rules run.
    pub enabled: bool,
    /// Most duplicated lines, as a fraction of lines.
    pub dup_line_frac: f64,
    /// Most duplicated paragraphs, as a fraction of paragraphs.
    pub dup_para_frac: f64,
    /// Most characters in duplicated lines, as a fraction of the text's.
    pub dup_line_char_frac: f64,
    /// Most characters in duplicated paragraphs.
    pub dup_para_char_frac: f64,
    /// Per n, the most characters the most frequent n-gram may cover.
    pub top_n_grams: Vec<(usize, f64)>,
    /// Per n, the most characters in n-grams seen before.
    pub dup_n_grams: Vec<(usize, f64)>,
}

impl Default for GopherRepetition {
    fn default() -> Self {
        Self {
            enabled: true,
            dup_line_frac: 0.3,
            dup_para_frac: 0.3,
            dup_line_char_frac: 0.2,
            dup_para_char_frac: 0.2,
            top_n_grams: vec![(2, 0.2), (3, 0.18), (4, 0.16)],
            dup_n_grams: vec![
                (5, 0.15),
                (6, 0.14),
                (7, 0.13),
                (8, 0.12),
                (9, 0.11),
                (10, 0.10),
            ],
        }
    }
}

/// Elements seen before (after their first) and their characters.
pub(crate) fn duplicates<'a>(items: impl IntoIterator<Item = &'a str>) -> (usize, usize) {
    let items = items.into_iter();
    let mut seen = HashSet::with_capacity(items.size_hint().0);
    let (mut count, mut chars) = (0, 0);
    for item in items {
        if !seen.insert(item) {
            count += 1;
            chars += item.chars().count();
        }
    }
    (count, chars)
}

/// The words of a text as the n-gram rules read them: each word hashed and its characters
/// counted once, and the n-grams' hashes for one `n` at a time, each made from the last
/// `n`'s with one more word: a step per word for each `n`, not `n` of them.
struct Grams<'a> {
    words: &'a [&'a str],
    hashes: Vec<u64>,
    /// Characters of the words before each index.
    chars_before: Vec<usize>,
    /// The hash of the `n`-gram at each index, after [`Grams::advance`] to `n`.
    at: Vec<u64>,
    n: usize,
}

impl<'a> Grams<'a> {
    fn new(words: &'a [&'a str]) -> Self {
        let state = FixedState::with_seed(0);
        let mut chars_before = Vec::with_capacity(words.len() + 1);
        chars_before.push(0);
        for w in words {
            chars_before.push(chars_before.last().copied().unwrap_or(0) + w.chars().count());
        }
        Self {
            words,
            hashes: words.iter().map(|w| state.hash_one(w)).collect(),
            chars_before,
            at: vec![0; words.len() + 1],
            n: 0,
        }
    }

    /// Hashes each `n`-gram into `at`, by its start; equal n-grams hash the same.
    fn advance(&mut self, n: usize) {
        if n < self.n {
            self.at = vec![0; self.words.len() + 1];
            self.n = 0;
        }
        while self.n < n && self.n < self.words.len() {
            let next = &self.hashes[self.n..];
            self.at.truncate(next.len());
            for (h, w) in self.at.iter_mut().zip(next) {
                *h = (h.rotate_left(23) ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            }
            self.n += 1;
        }
    }

    fn same(&self, a: usize, b: usize, n: usize) -> bool {
        self.words[a..a + n] == self.words[b..b + n]
    }

    /// The n-gram's characters when written with single spaces.
    fn chars(&self, i: usize, n: usize) -> usize {
        self.chars_before[i + n] - self.chars_before[i] + n.saturating_sub(1)
    }
}

impl GopherRepetition {
    /// Why `text` fails the rules, or `None` when it passes.
    pub fn check(&self, text: &str) -> Option<String> {
        self.check_words(text, &tokens(text))
    }

    /// [`GopherRepetition::check`] of `text` whose tokens are `words`.
    pub fn check_words(&self, text: &str, words: &[&str]) -> Option<String> {
        let len = text.chars().count().max(1) as f64;
        let paragraphs = split_paragraphs(text.trim());
        let (dup, chars) = duplicates(paragraphs.iter().copied());
        if dup as f64 / paragraphs.len().max(1) as f64 > self.dup_para_frac {
            return Some("dup_para_frac".into());
        }
        if chars as f64 / len > self.dup_para_char_frac {
            return Some("dup_para_char_frac".into());
        }
        let lines: Vec<&str> = text.lines().collect();
        let (dup, chars) = duplicates(lines.iter().copied());
        if dup as f64 / lines.len().max(1) as f64 > self.dup_line_frac {
            return Some("dup_line_frac".into());
        }
        if chars as f64 / len > self.dup_line_char_frac {
            return Some("dup_line_char_frac".into());
        }
        let mut grams = Grams::new(words);
        // (hash, first start, count) of each distinct n-gram; sized once, for every n.
        let mut counts: HashTable<(u64, usize, usize)> = HashTable::with_capacity(words.len());
        for &(n, frac) in &self.top_n_grams {
            if n == 0 || words.len() < n {
                continue;
            }
            counts.clear();
            let mut top = 0;
            grams.advance(n);
            for (i, &hash) in grams.at.iter().enumerate() {
                let count = match counts.find_mut(hash, |e| grams.same(e.1, i, n)) {
                    Some(entry) => {
                        entry.2 += 1;
                        entry.2
                    }
                    None => {
                        counts.insert_unique(hash, (hash, i, 1), |e| e.0);
                        1
                    }
                };
                top = top.max(grams.chars(i, n) * count);
            }
            if top as f64 / len > frac {
                return Some(format!("top_{n}_gram"));
            }
        }
        for &(n, frac) in &self.dup_n_grams {
            if n == 0 || words.len() < n {
                continue;
            }
            // An n-gram seen before counts its characters and the scan moves past it, so
            // overlapping repeats are not counted twice.
            let seen = &mut counts;
            seen.clear();
            let (mut repeated, mut i) = (0, 0);
            grams.advance(n);
            while i + n <= words.len() {
                let hash = grams.at[i];
                if seen.find(hash, |e| grams.same(e.1, i, n)).is_none() {
                    seen.insert_unique(hash, (hash, i, 1), |e| e.0);
                    i += 1;
                } else {
                    repeated += grams.chars(i, n);
                    i += n;
                }
            }
            if repeated as f64 / len > frac {
                return Some(format!("duplicated_{n}_n_grams"));
            }
        }
        None
    }
}

/// Paragraphs: the text between runs of two or more newlines.
fn split_paragraphs(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("\n\n") {
        out.push(&rest[..at]);
        rest = rest[at..].trim_start_matches('\n');
    }
    out.push(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A text of `n` distinct words with enough stop words and prose-like lengths.
    fn prose(n: usize) -> String {
        (0..n)
            .map(|i| match i % 5 {
                0 => "the".to_string(),
                1 => "river".to_string(),
                2 => format!("word{i}"),
                3 => "of".to_string(),
                _ => format!("valley{i}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn quality_rules_follow_gophers_thresholds() {
        let q = GopherQuality::default();
        assert_eq!(q.check(&prose(60)), None);
        assert_eq!(q.check(&prose(49)), Some("gopher_short_doc"));
        assert_eq!(q.check(&prose(100_001)), Some("gopher_long_doc"));
        // Punctuation is not a word.
        assert_eq!(
            q.check(&format!("{} , , , ,", prose(49))),
            Some("gopher_short_doc")
        );
        let short = vec!["a to"; 40].join(" ");
        assert_eq!(q.check(&short), Some("gopher_below_avg_threshold"));
        let long = format!("the of {}", vec!["incomprehensibilities"; 60].join(" "));
        assert_eq!(q.check(&long), Some("gopher_above_avg_threshold"));
        // 60 words, 7 hashes: over 0.1 per word; 6 is exactly 0.1 and passes.
        assert_eq!(
            q.check(&format!("{} {}", prose(60), "#".repeat(7))),
            Some("gopher_too_many_hashes")
        );
        assert_eq!(q.check(&format!("{} {}", prose(60), "#".repeat(6))), None);
        assert_eq!(
            q.check(&format!("{} {}", prose(60), "… ".repeat(7))),
            Some("gopher_too_many_ellipsis")
        );
        let bullets = (0..20)
            .map(|i| format!("• the river of valley number{i} runs"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(q.check(&bullets), Some("gopher_too_many_bullets"));
        let trailing = (0..20)
            .map(|i| {
                let end = if i % 2 == 0 { "..." } else { "." };
                format!("the river of valley number{i} runs{end}")
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(q.check(&trailing), Some("gopher_too_many_end_ellipsis"));
        let numbers = format!(
            "{} {}",
            prose(50),
            (0..20)
                .map(|i| format!("{}", 1000 + i))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert_eq!(q.check(&numbers), Some("gopher_below_alpha_threshold"));
        let no_stop = (0..60)
            .map(|i| format!("river{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(q.check(&no_stop), Some("gopher_enough_stop_words"));
    }

    /// Where FineWeb's rules (datatrove's `GopherQualityFilter`) count differently from a
    /// first reading of Gopher's table.
    #[test]
    fn quality_rules_count_as_finewebs() {
        let q = GopherQuality::default();
        // The alphabetic share is over every token: 60 words and 16 commas are 0.79.
        let commas = format!("{} {}", prose(60), vec![","; 16].join(" "));
        assert_eq!(q.check(&commas), Some("gopher_below_alpha_threshold"));
        assert_eq!(
            q.check(&format!("{} {}", prose(60), vec![","; 15].join(" "))),
            None
        );
        // Lines starting with a hyphen are bullets too.
        let dashes = (0..20)
            .map(|i| format!("- the river of valley number{i} runs"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(q.check(&dashes), Some("gopher_too_many_bullets"));
        // Stop words are counted once each: "the" thirty times is one.
        let one_stop = (0..30)
            .map(|i| format!("the river{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(q.check(&one_stop), Some("gopher_enough_stop_words"));
        assert_eq!(q.check(&format!("{one_stop} of")), None);
    }

    #[test]
    fn repetition_rules_follow_gophers_thresholds() {
        let r = GopherRepetition::default();
        let article = crate::quality::tests::article();
        assert_eq!(r.check(&article), None);
        // 4 of 12 lines repeat one before: 0.33 > 0.3.
        let mut lines: Vec<&str> = article.lines().collect();
        for i in 0..4 {
            lines[8 + i] = lines[i];
        }
        assert_eq!(r.check(&lines.join("\n")), Some("dup_line_frac".into()));
        // Paragraphs are split on blank lines.
        assert_eq!(r.check(&lines.join("\n\n")), Some("dup_para_frac".into()));
        // One long line repeated: few lines, many characters.
        let long = "a long line with many characters in it, repeated once more".repeat(3);
        let text = format!("{long}\n{long}\nshort one\nshort two\nshort three\nshort four");
        assert_eq!(r.check(&text), Some("dup_line_char_frac".into()));
        // One bigram everywhere.
        let bigram = (0..30)
            .map(|i| format!("hello world w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(r.check(&bigram), Some("top_2_gram".into()));
        // A 5-word phrase 20 times among distinct words: its 19 repeats are 17% of the
        // characters (over 0.15), while its most frequent 4-gram covers 14% (under 0.16).
        let mut words: Vec<String> = (0..266).map(|i| format!("unique{i:03}")).collect();
        for i in 0..20 {
            words.insert(i * 14, "abcde fghij klmno pqrst uvwxy".into());
        }
        assert_eq!(
            r.check(&words.join(" ")),
            Some("duplicated_5_n_grams".into())
        );
    }

    /// The n-gram rules as written, with each n-gram its own key.
    fn n_gram_rule_by_definition(rules: &GopherRepetition, text: &str) -> Option<String> {
        let words = tokens(text);
        let len = text.chars().count().max(1) as f64;
        let chars = |g: &[&str]| g.iter().map(|w| w.chars().count()).sum::<usize>() + g.len() - 1;
        for &(n, frac) in &rules.top_n_grams {
            let mut counts = std::collections::HashMap::new();
            let top = words
                .windows(n)
                .map(|g| {
                    let c = counts.entry(g).or_insert(0);
                    *c += 1;
                    chars(g) * *c
                })
                .max()
                .unwrap_or(0);
            if top as f64 / len > frac {
                return Some(format!("top_{n}_gram"));
            }
        }
        for &(n, frac) in &rules.dup_n_grams {
            let mut seen = std::collections::HashSet::new();
            let (mut repeated, mut i) = (0, 0);
            while i + n <= words.len() {
                if seen.insert(&words[i..i + n]) {
                    i += 1;
                } else {
                    repeated += chars(&words[i..i + n]);
                    i += n;
                }
            }
            if repeated as f64 / len > frac {
                return Some(format!("duplicated_{n}_n_grams"));
            }
        }
        None
    }

    proptest::proptest! {
        /// The n-gram rules decide as their definition does, on texts of few distinct
        /// words (so that n-grams repeat) with the line and paragraph rules turned off.
        #[test]
        fn n_gram_rules_match_their_definition(
            picks in proptest::collection::vec(0usize..12, 0..400),
            vocab in 2usize..12,
        ) {
            const VOCAB: [&str; 12] = [
                "the", "river", "of", "a", "valley", "runs", "north", "café", "and", "sea", ".", "x",
            ];
            let text = picks.iter().map(|&i| VOCAB[i % vocab]).collect::<Vec<_>>().join(" ");
            let rules = GopherRepetition {
                dup_line_frac: 1.0,
                dup_para_frac: 1.0,
                dup_line_char_frac: 1.0,
                dup_para_char_frac: 1.0,
                ..GopherRepetition::default()
            };
            proptest::prop_assert_eq!(rules.check(&text), n_gram_rule_by_definition(&rules, &text));
        }
    }
}
