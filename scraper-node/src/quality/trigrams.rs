//! whatlang's trigram method, scored from an index of its profiles.
//!
//! whatlang compares a text with every language of its script by looking each of the
//! language's 300 trigrams up in the text's: some 11,000 lookups for a Latin text however
//! short, about 70 µs, which made language identification a third of a scraper node's CPU.
//! The same distances come from the other side: each of the text's trigrams looked up once
//! in an index of all the profiles. The result is whatlang's `Method::Trigram`, language and
//! confidence alike (a test compares the two); scripts whose language needs no trigrams
//! (Greek, Hangul, Mandarin...) are left to whatlang.
//!
//! The profiles are whatlang's, written out by `scripts/whatlang-profiles.py`.

use std::sync::OnceLock;

use foldhash::{HashMap, HashMapExt as _};
use whatlang::{Lang, Script};

/// whatlang's profiles: script group, language, trigrams by rank.
const PROFILES: &str = include_str!("trigram_profiles.txt");
/// Largest distance of one trigram between a profile and a text.
const MAX_DISTANCE: u32 = 300;
/// The text's most frequent trigrams compared.
const TEXT_TRIGRAMS: usize = 600;

/// The languages written in one script, and where each trigram ranks in their profiles.
#[derive(Default)]
struct Group {
    langs: Vec<Lang>,
    /// Trigrams in each language's profile.
    lengths: Vec<u32>,
    /// Trigram -> its run in `postings`.
    index: HashMap<u64, (u32, u32)>,
    /// Every profile holding a trigram, the trigram's together.
    postings: Vec<Posting>,
}

/// A language of a group and a trigram's rank in its profile.
type Posting = (u8, u16);

struct Profiles {
    latin: Group,
    cyrillic: Group,
    arabic: Group,
    devanagari: Group,
    hebrew: Group,
}

/// A trigram as one number whose order is the order of its characters.
fn key(a: char, b: char, c: char) -> u64 {
    (u64::from(a) << 42) | (u64::from(b) << 21) | u64::from(c)
}

fn profiles() -> &'static Profiles {
    static PROFILES_INDEX: OnceLock<Profiles> = OnceLock::new();
    PROFILES_INDEX.get_or_init(|| {
        let mut lists: HashMap<&str, HashMap<u64, Vec<Posting>>> = HashMap::new();
        let mut groups: HashMap<&str, Group> = HashMap::new();
        for line in PROFILES.lines().filter(|l| !l.starts_with('#')) {
            let mut fields = line.split(' ');
            let (Some(script), Some(code)) = (fields.next(), fields.next()) else {
                continue;
            };
            // Built into the binary and checked by the tests: a profile that does not
            // parse is a build error, not input.
            let lang = Lang::from_code(code).expect("a whatlang language code");
            let group = groups.entry(script).or_default();
            let id = u8::try_from(group.langs.len()).expect("fewer than 256 languages");
            group.langs.push(lang);
            let mut length = 0;
            for (rank, trigram) in fields.enumerate() {
                let mut chars = trigram.chars().map(|c| if c == '_' { ' ' } else { c });
                let (Some(a), Some(b), Some(c)) = (chars.next(), chars.next(), chars.next()) else {
                    continue;
                };
                let rank = u16::try_from(rank).expect("short profiles");
                let list = lists.entry(script).or_default();
                list.entry(key(a, b, c)).or_default().push((id, rank));
                length += 1;
            }
            group.lengths.push(length);
        }
        // Each trigram's holders side by side in one table: a text's trigram costs one
        // lookup and one short run of memory.
        for (script, list) in lists {
            let group = groups.entry(script).or_default();
            for (trigram, holders) in list {
                let start = u32::try_from(group.postings.len()).expect("a small table");
                group.postings.extend(holders);
                let end = u32::try_from(group.postings.len()).expect("a small table");
                group.index.insert(trigram, (start, end));
            }
        }
        let mut take = |name| groups.remove(name).unwrap_or_default();
        Profiles {
            latin: take("latin"),
            cyrillic: take("cyrillic"),
            arabic: take("arabic"),
            devanagari: take("devanagari"),
            hebrew: take("hebrew"),
        }
    })
}

/// Spaces, punctuation and digits: whatlang counts them all as a space.
fn is_stop_char(c: char) -> bool {
    matches!(c, '\u{0000}'..='\u{0040}' | '\u{005B}'..='\u{0060}' | '\u{007B}'..='\u{007E}')
}

/// The language of `text` and whatlang's confidence in it, as whatlang's trigram method
/// finds them; `None` when the text has no letters.
pub(super) fn detect(text: &str) -> Option<(Lang, f64)> {
    let script = whatlang::detect_script(text)?;
    let p = profiles();
    let group = match script {
        Script::Latin => &p.latin,
        Script::Cyrillic => &p.cyrillic,
        Script::Arabic => &p.arabic,
        Script::Devanagari => &p.devanagari,
        Script::Hebrew => &p.hebrew,
        _ => return whatlang::detect(text).map(|info| (info.lang(), info.confidence())),
    };
    let positions = text_trigrams(text);
    let count = u32::try_from(positions.len()).unwrap_or(u32::MAX);
    if count == 0 || group.langs.is_empty() {
        return None;
    }
    // A language's distance: for each of its trigrams, how far its rank is from the
    // text's, MAX_DISTANCE when the text lacks it. Summed here from the text's side.
    let mut near = vec![0i64; group.langs.len()];
    for (at, trigram) in positions.iter().enumerate() {
        let Some(&(start, end)) = group.index.get(trigram) else {
            continue;
        };
        for &(lang, rank) in &group.postings[start as usize..end as usize] {
            let apart = (at as i64 - i64::from(rank)).abs();
            near[usize::from(lang)] += i64::from(MAX_DISTANCE) - apart;
        }
    }
    let mut distances: Vec<(Lang, u32)> = group
        .langs
        .iter()
        .zip(&group.lengths)
        .zip(&near)
        .map(|((&lang, &length), &near)| {
            let mut total = i64::from(MAX_DISTANCE) * i64::from(length) - near;
            // whatlang's allowance for texts with fewer trigrams than a profile.
            if MAX_DISTANCE > count {
                total -= i64::from((MAX_DISTANCE - count) * MAX_DISTANCE);
            }
            let total = total.clamp(0, i64::from(MAX_DISTANCE * MAX_DISTANCE));
            (lang, u32::try_from(total).unwrap_or(u32::MAX))
        })
        .collect();
    // The same sort on the same order as whatlang: ties fall the same way.
    distances.sort_unstable_by_key(|&(_, d)| d);
    let max = count * MAX_DISTANCE;
    let score = |d: u32| f64::from(max.saturating_sub(d)) / f64::from(max);
    let (lang, first) = distances.first().map(|&(l, d)| (l, score(d)))?;
    let confidence = match distances.get(1) {
        Some(&(_, d)) => confidence(first, score(d), positions.len()),
        None => 1.0,
    };
    Some((lang, confidence))
}

/// The text's trigrams, most frequent first (ties: the greater trigram first), at most
/// [`TEXT_TRIGRAMS`]: whatlang's text profile.
fn text_trigrams(text: &str) -> Vec<u64> {
    let mut counts: HashMap<u64, u32> = HashMap::with_capacity(text.len().min(2048));
    let lower = text.to_lowercase();
    let mut chars = lower
        .chars()
        .map(|c| if is_stop_char(c) { ' ' } else { c })
        .chain(Some(' '));
    let mut c1 = ' ';
    let mut c2 = chars.next().unwrap_or(' ');
    for c3 in chars {
        if !(c2 == ' ' && (c1 == ' ' || c3 == ' ')) {
            *counts.entry(key(c1, c2, c3)).or_default() += 1;
        }
        c1 = c2;
        c2 = c3;
    }
    let mut ranked: Vec<(u32, u64)> = counts.into_iter().map(|(k, n)| (n, k)).collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked.truncate(TEXT_TRIGRAMS);
    ranked.into_iter().map(|(_, k)| k).collect()
}

/// whatlang's confidence that the best of two scores is right: 1 when it leads the second
/// by enough for a text of `count` trigrams, proportionally less below that.
fn confidence(first: f64, second: f64, count: usize) -> f64 {
    if first == 0.0 {
        return 0.0;
    }
    if second == 0.0 {
        return first;
    }
    let confident_rate = (3.0 / count as f64) + 0.015;
    let rate = (first - second) / second;
    if rate > confident_rate {
        1.0
    } else {
        rate / confident_rate
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use whatlang::dev::{Method, Options, detect_with_options};

    use super::*;

    fn whatlangs(text: &str) -> Option<(Lang, f64)> {
        detect_with_options(text, &Options::new().set_method(Method::Trigram))
            .map(|info| (info.lang(), info.confidence()))
    }

    const TEXTS: [&str; 9] = [
        "The river rises in the hills above the town and runs north for many miles.",
        "La rivière prend sa source dans les collines au-dessus de la ville.",
        "Der Fluss entspringt in den Hügeln oberhalb der Stadt und fließt nach Norden.",
        "El río nace en las colinas que hay sobre el pueblo y corre hacia el norte.",
        "Река берёт начало в холмах над городом и течёт на север много километров.",
        "Річка бере початок у пагорбах над містом і тече на північ багато кілометрів.",
        "النهر ينبع من التلال فوق المدينة ويجري شمالا لأميال عديدة",
        "नदी शहर के ऊपर की पहाड़ियों से निकलती है और कई मील उत्तर की ओर बहती है",
        "הנהר נובע בגבעות שמעל העיר וזורם צפונה לאורך קילומטרים רבים",
    ];

    #[test]
    fn identifies_as_whatlang_does() {
        let p = profiles();
        assert_eq!(
            [&p.latin, &p.cyrillic, &p.arabic, &p.devanagari, &p.hebrew]
                .iter()
                .map(|g| g.langs.len())
                .sum::<usize>(),
            PROFILES.lines().filter(|l| !l.starts_with('#')).count()
        );
        for text in TEXTS {
            assert_eq!(detect(text), whatlangs(text), "{text}");
        }
        let all = TEXTS.join(" ");
        assert_eq!(detect(&all), whatlangs(&all));
        for text in [
            "",
            "1234 5678",
            "a",
            "Ab",
            "日本語のテキストです",
            "한국어 텍스트",
        ] {
            assert_eq!(detect(text), whatlangs(text), "{text:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Any mix of words from the texts above, cut anywhere: the same language and the
        /// same confidence as whatlang.
        #[test]
        fn agrees_with_whatlang(
            picks in proptest::collection::vec((0..TEXTS.len(), 0usize..40), 1..40),
            noise in "[a-zA-Z0-9 .,éßжΣİ]{0,40}",
        ) {
            let words: Vec<Vec<&str>> =
                TEXTS.iter().map(|t| t.split(' ').collect()).collect();
            let mut text: String = picks
                .iter()
                .map(|&(t, w)| words[t][w % words[t].len()])
                .collect::<Vec<_>>()
                .join(" ");
            text.push_str(&noise);
            prop_assert_eq!(detect(&text), whatlangs(&text), "{}", text);
        }
    }
}
