//! FineWeb's pipeline, page by page: the language filter, Gopher's repetition and quality
//! rules, C4's rules (which also remove lines), FineWeb's own rules, then PII anonymisation;
//! and the MinHash signature the coordinator deduplicates the whole crawl with. Each step has
//! FineWeb's published thresholds unless the crawl spec says otherwise. Pure.
//!
//! ```text
//! page ─▶ mostly link text? ─▶ language in `languages`, score >= 0.65? ─▶ Gopher repetition
//!      ─▶ Gopher quality ─▶ C4 (lines removed) ─▶ FineWeb ─▶ PII replaced
//!      ─▶ row text + MinHash buckets
//!      any step failing ─▶ dropped, with the step's reason
//! ```

mod c4;
mod fineweb;
mod gopher;
mod language;
mod minhash;
mod pii;
mod trigrams;
mod words;

use serde::{Deserialize, Serialize};

pub use c4::C4;
pub use fineweb::FineWeb;
pub use gopher::{GopherQuality, GopherRepetition};
pub use language::identify;
pub use minhash::{Dedup, MAX_HASHES, MAX_N_GRAMS, MinHasher};
pub use pii::Pii;

use words::tokens;

/// Most n-gram rules in a Gopher repetition setting.
const MAX_N_GRAM_RULES: usize = 16;

/// A crawl's pipeline. `[quality]` in a crawl spec; `enabled = false` keeps every page as
/// extracted, duplicates included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quality {
    /// Whether any step runs.
    pub enabled: bool,
    /// Pages whose link text is more than this share of their link text and main text's
    /// prose together are indexes, dropped as `link_list` (Tessera's rule; on the labelled
    /// set articles stay at or under 0.54, and the indexes this passes, the next catches).
    pub max_link_density: f64,
    /// Pages whose main text is more than this share link text are lists of links, dropped
    /// as `link_list` (articles stay under 0.12, indexes whose list Readability took for the
    /// article over 0.33).
    pub max_article_link_density: f64,
    /// Languages kept (ISO 639-1 codes); empty keeps every language.
    pub languages: Vec<String>,
    /// Lowest language score kept.
    pub language_threshold: f64,
    /// Gopher's repetition rules.
    pub gopher_repetition: GopherRepetition,
    /// Gopher's quality rules.
    pub gopher_quality: GopherQuality,
    /// C4's rules.
    pub c4: C4,
    /// FineWeb's own rules.
    pub fineweb: FineWeb,
    /// PII anonymisation.
    pub pii: Pii,
    /// Deduplication across the crawl.
    pub dedup: Dedup,
}

impl Default for Quality {
    fn default() -> Self {
        Self {
            enabled: true,
            max_link_density: 0.6,
            max_article_link_density: 0.3,
            languages: vec!["en".into()],
            language_threshold: 0.65,
            gopher_repetition: GopherRepetition::default(),
            gopher_quality: GopherQuality::default(),
            c4: C4::default(),
            fineweb: FineWeb::default(),
            pii: Pii::default(),
            dedup: Dedup::default(),
        }
    }
}

/// A page the pipeline keeps: its text as the row holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The text after C4's line removal and PII anonymisation.
    pub text: String,
    /// Its MinHash bucket hashes (empty when near-deduplication is off).
    pub buckets: Vec<u64>,
}

impl Quality {
    /// The pipeline off: every page kept as extracted, no deduplication.
    pub fn off() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Where a setting is out of range, what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let share = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("quality.{name} must be between 0 and 1, not {v}"))
            }
        };
        share("language_threshold", self.language_threshold)?;
        share("max_link_density", self.max_link_density)?;
        share("max_article_link_density", self.max_article_link_density)?;
        if self.languages.len() > 256 || self.languages.iter().any(|l| l.len() > 8) {
            return Err("quality.languages: at most 256 codes of at most 8 letters".into());
        }
        let r = &self.gopher_repetition;
        for (name, v) in [
            ("dup_line_frac", r.dup_line_frac),
            ("dup_para_frac", r.dup_para_frac),
            ("dup_line_char_frac", r.dup_line_char_frac),
            ("dup_para_char_frac", r.dup_para_char_frac),
        ] {
            share(&format!("gopher_repetition.{name}"), v)?;
        }
        for (name, rules) in [
            ("top_n_grams", &r.top_n_grams),
            ("dup_n_grams", &r.dup_n_grams),
        ] {
            if rules.len() > MAX_N_GRAM_RULES
                || rules.iter().any(|&(n, _)| n == 0 || n > MAX_N_GRAMS)
            {
                return Err(format!(
                    "quality.gopher_repetition.{name}: at most {MAX_N_GRAM_RULES} rules of 1 to \
                     {MAX_N_GRAMS} words"
                ));
            }
        }
        let d = &self.dedup;
        if d.n_grams == 0 || d.n_grams > MAX_N_GRAMS {
            return Err(format!(
                "quality.dedup.n_grams must be 1 to {MAX_N_GRAMS}, not {}",
                d.n_grams
            ));
        }
        if d.buckets == 0
            || d.hashes_per_bucket == 0
            || d.buckets.saturating_mul(d.hashes_per_bucket) > MAX_HASHES
        {
            return Err(format!(
                "quality.dedup: buckets times hashes_per_bucket must be 1 to {MAX_HASHES}"
            ));
        }
        Ok(())
    }

    /// Whether a page of these link densities ([`Extracted`]'s) is kept as an article.
    ///
    /// [`Extracted`]: crate::extract::Extracted
    pub fn keeps_links(&self, link_density: f64, article_link_density: f64) -> bool {
        !self.enabled
            || (link_density <= self.max_link_density
                && article_link_density <= self.max_article_link_density)
    }

    /// Runs the pipeline over one page's extracted `text`, whose language and score the
    /// extractor found. `hasher` is this setting's [`MinHasher`] (made once per crawl).
    pub fn apply(
        &self,
        text: &str,
        language: &str,
        score: f64,
        hasher: &MinHasher,
    ) -> Result<Kept, String> {
        let mut text = std::borrow::Cow::Borrowed(text);
        if self.enabled {
            if (!self.languages.is_empty() && !self.languages.iter().any(|l| l == language))
                || score < self.language_threshold
            {
                return Err("language".into());
            }
            // Tokenized once for both of Gopher's rules, and again only if C4 changed the text.
            let words = tokens(&text);
            if self.gopher_repetition.enabled
                && let Some(why) = self.gopher_repetition.check_words(&text, &words)
            {
                return Err(why);
            }
            if self.gopher_quality.enabled
                && let Some(why) = self.gopher_quality.check_words(&text, &words)
            {
                return Err(why.into());
            }
            let mut count = words.len();
            if self.c4.enabled {
                let kept = self.c4.apply(&text).map_err(String::from)?;
                if kept != text {
                    count = tokens(&kept).len();
                    text = kept.into();
                }
            }
            if self.fineweb.enabled
                && let Some(why) = self.fineweb.check_words(&text, count)
            {
                return Err(why.into());
            }
            text = self.pii.apply(&text).into();
        }
        let buckets = if self.enabled && self.dedup.minhash {
            hasher.buckets(&text)
        } else {
            Vec::new()
        };
        Ok(Kept {
            text: text.into_owned(),
            buckets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An English article that passes every step.
    pub(crate) fn article() -> String {
        [
            "The river rises in the hills above the town and runs north to the sea.",
            "In spring the melting snow fills it to the top of its banks, and sometimes over.",
            "Farmers along its course have learned to read the colour of the water.",
            "When it turns brown and fast, they move their animals to higher fields.",
            "The old mill stood at the bend for two hundred years before the flood of 1952.",
            "That year the water rose in a single night and carried the wheel away.",
            "The miller's family rebuilt the house but never the mill, which is now a museum.",
            "Visitors can still see the stones and the channel that fed the wheel.",
            "Today a weir upstream holds back the worst of the spring water.",
            "Engineers built it after a long argument with the people of the valley.",
            "Some of them still say the river was better left to itself.",
            "Most agree, though, that fewer floods have been worth the change.",
        ]
        .join("\n")
    }

    #[test]
    fn an_article_passes_and_its_pii_is_replaced() {
        let q = Quality::default();
        let h = MinHasher::new(&q.dedup);
        let text = format!("{}\nWrite to the miller at miller@mill.example.", article());
        let kept = q.apply(&text, "en", 0.9, &h).unwrap();
        assert!(
            kept.text
                .ends_with("Write to the miller at email@example.com.")
        );
        assert_eq!(kept.buckets.len(), 14);
    }

    #[test]
    fn each_step_drops_with_its_reason() {
        let q = Quality::default();
        let h = MinHasher::new(&q.dedup);
        assert_eq!(q.apply(&article(), "fr", 0.9, &h), Err("language".into()));
        assert_eq!(q.apply(&article(), "en", 0.6, &h), Err("language".into()));
        let any = Quality {
            languages: vec![],
            ..Quality::default()
        };
        assert!(any.apply(&article(), "fr", 0.9, &h).is_ok());
        let repeated = [article(), article()].join("\n");
        assert_eq!(
            q.apply(&repeated, "en", 0.9, &h),
            Err("dup_line_frac".into())
        );
        let text = article();
        let short: Vec<&str> = text.lines().take(3).collect();
        assert_eq!(
            q.apply(&short.join("\n"), "en", 0.9, &h),
            Err("gopher_short_doc".into())
        );
        let code = format!("{}\nfunction f() {{ return the_value; }}", article());
        assert_eq!(q.apply(&code, "en", 0.9, &h), Err("curly_bracket".into()));
        assert!(Quality::off().apply("Too short.", "xx", 0.0, &h).is_ok());
        assert!(q.keeps_links(0.6, 0.3));
        assert!(!q.keeps_links(0.61, 0.0) && !q.keeps_links(0.0, 0.31));
        assert!(Quality::off().keeps_links(1.0, 1.0));
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        let mut q = Quality::default();
        q.dedup.buckets = 1 << 20;
        assert!(q.check().unwrap_err().contains("buckets"));
        let q = Quality {
            language_threshold: 2.0,
            ..Quality::default()
        };
        assert!(q.check().unwrap_err().contains("language_threshold"));
        let mut q = Quality::default();
        q.gopher_repetition.top_n_grams = vec![(1000, 0.1)];
        assert!(q.check().is_err());
        assert_eq!(Quality::default().check(), Ok(()));
    }
}
