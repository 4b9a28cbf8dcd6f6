//! The language of a page's text and how much of the text is in it.
//!
//! FineWeb keeps pages whose fastText score for English is at least 0.65: the score falls
//! on pages that mix languages or carry little prose. whatlang's own confidence is a margin
//! between its two best guesses and is 1.0 on nearly every page, so the score here is the
//! share of the text, by characters, that whatlang finds in the page's language, each
//! passage weighed by its confidence: a page all in one language scores near 1, half
//! English and half French about 0.5, scraps of navigation low.

use std::collections::HashMap;

use super::trigrams;

/// Characters of text read: a page's language shows in its first pages of text.
const SAMPLE: usize = 16 * 1024;
/// Shortest passage identified on its own: shorter lines join the next.
const PASSAGE: usize = 200;
/// Passages identified at most, spread evenly over the text: whatlang's time grows with the
/// text it reads, and a handful of passages estimate the share of a page in its language
/// about as well as all of them.
const MAX_PASSAGES: usize = 4;

/// The page's language (ISO 639-1 where there is one, ISO 639-3 otherwise; empty when
/// none is found) and its score, 0 to 1.
pub fn identify(text: &str) -> (String, f64) {
    let text = match text.char_indices().nth(SAMPLE) {
        Some((at, _)) => &text[..at],
        None => text,
    };
    let all = passages(text);
    // The middle passage of each of `m` equal stretches of the text.
    let m = all.len().min(MAX_PASSAGES);
    let chosen = (0..m).map(|i| all[(2 * i + 1) * all.len() / (2 * m)]);
    let mut weights: HashMap<whatlang::Lang, f64> = HashMap::new();
    let mut total = 0usize;
    for passage in chosen {
        let chars = passage.chars().filter(|c| c.is_alphabetic()).count();
        if chars == 0 {
            continue;
        }
        total += chars;
        if let Some((lang, confidence)) = trigrams::detect(passage) {
            *weights.entry(lang).or_default() += chars as f64 * confidence;
        }
    }
    let best = weights
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.code().cmp(a.0.code())));
    match best {
        Some((lang, weight)) if total > 0 => (
            iso_639_1(lang.code()).to_string(),
            (weight / total as f64).clamp(0.0, 1.0),
        ),
        _ => (String::new(), 0.0),
    }
}

/// The text cut at line ends into passages of at least [`PASSAGE`] bytes (the last may be
/// shorter).
fn passages(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        at += line.len();
        if at - start >= PASSAGE {
            out.push(&text[start..at]);
            start = at;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// FineWeb's `language` column holds two-letter codes; whatlang names ISO 639-3 ones.
fn iso_639_1(code: &str) -> &str {
    match code {
        "afr" => "af",
        "aka" => "ak",
        "amh" => "am",
        "ara" => "ar",
        "aze" => "az",
        "bel" => "be",
        "ben" => "bn",
        "bul" => "bg",
        "cat" => "ca",
        "ces" => "cs",
        "cmn" => "zh",
        "cym" => "cy",
        "dan" => "da",
        "deu" => "de",
        "ell" => "el",
        "eng" => "en",
        "epo" => "eo",
        "est" => "et",
        "fin" => "fi",
        "fra" => "fr",
        "guj" => "gu",
        "heb" => "he",
        "hin" => "hi",
        "hrv" => "hr",
        "hun" => "hu",
        "hye" => "hy",
        "ind" => "id",
        "ita" => "it",
        "jav" => "jv",
        "jpn" => "ja",
        "kan" => "kn",
        "kat" => "ka",
        "khm" => "km",
        "kor" => "ko",
        "lat" => "la",
        "lav" => "lv",
        "lit" => "lt",
        "mal" => "ml",
        "mar" => "mr",
        "mkd" => "mk",
        "mya" => "my",
        "nep" => "ne",
        "nld" => "nl",
        "nob" => "nb",
        "ori" => "or",
        "pan" => "pa",
        "pes" => "fa",
        "pol" => "pl",
        "por" => "pt",
        "ron" => "ro",
        "rus" => "ru",
        "sin" => "si",
        "slk" => "sk",
        "slv" => "sl",
        "sna" => "sn",
        "spa" => "es",
        "srp" => "sr",
        "swe" => "sv",
        "tam" => "ta",
        "tel" => "te",
        "tgl" => "tl",
        "tha" => "th",
        "tuk" => "tk",
        "tur" => "tr",
        "ukr" => "uk",
        "urd" => "ur",
        "uzb" => "uz",
        "vie" => "vi",
        "yid" => "yi",
        "zul" => "zu",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EN: &str = "The river rises in the hills above the town and runs north for many miles before it reaches the sea. In spring the melting snow fills it to the top of its banks, and the farmers along its course watch the water with care. Most years it stays where it belongs.";
    const FR: &str = "La rivière prend sa source dans les collines au-dessus de la ville et coule vers le nord pendant de nombreux kilomètres avant d'atteindre la mer. Au printemps, la neige qui fond la remplit jusqu'en haut de ses berges, et les paysans qui vivent le long de son cours surveillent l'eau avec attention.";
    const DE: &str = "Der Fluss entspringt in den Hügeln oberhalb der Stadt und fließt viele Kilometer nach Norden, bevor er das Meer erreicht. Im Frühling füllt ihn der schmelzende Schnee bis an den Rand seiner Ufer, und die Bauern entlang seines Laufs beobachten das Wasser mit großer Sorgfalt.";
    const ES: &str = "El río nace en las colinas que hay sobre el pueblo y corre hacia el norte durante muchos kilómetros antes de llegar al mar. En primavera la nieve que se derrite lo llena hasta lo alto de sus orillas, y los campesinos que viven a lo largo de su curso vigilan el agua con cuidado.";
    const RU: &str = "Река берёт начало в холмах над городом и течёт на север много километров, прежде чем достигнет моря. Весной тающий снег наполняет её до самых берегов, и крестьяне, живущие вдоль её русла, внимательно следят за водой. Почти каждый год она остаётся в своих берегах.";
    const JA: &str = "川は町の上の丘から始まり、海に着くまで北へ何キロも流れています。春になると雪解け水が岸の上まで川を満たし、川沿いに住む農家の人たちは水の様子を注意深く見守ります。たいていの年、川は元の場所にとどまります。";

    #[test]
    fn a_page_in_one_language_scores_near_one() {
        for (text, code) in [
            (EN, "en"),
            (FR, "fr"),
            (DE, "de"),
            (ES, "es"),
            (RU, "ru"),
            (JA, "ja"),
        ] {
            let page = [text; 3].join("\n");
            let (language, score) = identify(&page);
            assert_eq!(language, code, "{text}");
            assert!(score >= 0.8, "{code}: {score}");
        }
    }

    #[test]
    fn mixed_pages_and_scraps_score_lower() {
        // Half English, half French, paragraph by paragraph: about half the text is in
        // either language.
        let mixed = [EN, FR, EN, FR].join("\n");
        let (language, score) = identify(&mixed);
        assert!(language == "en" || language == "fr", "{language}");
        assert!((0.3..=0.7).contains(&score), "{score}");
        // Three quarters English.
        let (language, mostly) = identify(&[EN, EN, EN, DE].join("\n"));
        assert_eq!(language, "en");
        assert!(mostly > score && mostly < 0.9, "{mostly}");
        // Navigation scraps and numbers carry little language.
        let scraps = "Home\nLogin\n12345 678\nCart (0)\nEN | DE | FR\n© 2026\n";
        let (_, low) = identify(&format!("{scraps}{scraps}{scraps}"));
        assert!(low < 0.65, "{low}");
        // Not a constant: the scores differ.
        let (_, full) = identify(EN);
        assert!(full > mostly);
        assert_eq!(identify(""), (String::new(), 0.0));
        assert_eq!(identify("1234 5678"), (String::new(), 0.0));
    }

    #[test]
    fn long_pages_are_read_in_a_few_passages_from_all_of_them() {
        let english = [EN; 40].join("\n");
        assert!(passages(&english).len() > MAX_PASSAGES);
        let (language, score) = identify(&english);
        assert_eq!(language, "en");
        assert!(score >= 0.8, "{score}");
        // An English first half and a French second half: the passages read come from both.
        let halves = [[EN; 20].join("\n"), [FR; 20].join("\n")].join("\n");
        let (_, half) = identify(&halves);
        assert!((0.3..=0.7).contains(&half), "{half}");
        // Passages are whole lines and cover the text.
        assert_eq!(passages(&halves).concat(), halves);
    }
}
