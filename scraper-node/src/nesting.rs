//! How deeply a page nests its elements, bounded before and after parsing.
//!
//! html5ever keeps every open element on a stack and walks it for many start tags, so a page
//! of N nested elements costs N² steps to parse, and the recursive walks after it (ours,
//! Readability's) overflow the stack. Browsers cap the depth (Chromium at 512); Tessera
//! refuses a page past [`MAX_DEPTH`] instead, in two steps:
//!
//! ```text
//! bytes ─▶ scan: tags opened less tags closed (never fewer than the parser's depth, within 2x)
//!            ─▶ over the limit: "too deep", unparsed
//!       ─▶ parse ─▶ the tree's real depth, walked without recursion ─▶ over: "too deep"
//! ```
//!
//! The scan counts only elements that can hold themselves nested: void elements and those
//! that the parser closes implicitly (`p`, `li`, `td`, `option`, ...) never deepen it by
//! themselves, so an untidy page of unclosed paragraphs is not refused; a table counts for
//! the four levels the parser builds in it.

use ego_tree::iter::Edge;
use scraper::Html;

/// Deepest element nesting a page may have.
pub const MAX_DEPTH: usize = 1024;

/// A page nested deeper than [`MAX_DEPTH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("page nests elements more than {MAX_DEPTH} deep")]
pub struct TooDeep;

/// An upper bound on the depth the parser will build (within a factor of two, and a few
/// levels of elements that close their own kind), from one pass over the bytes; stops
/// counting past `limit`.
///
/// Elements are kept on a stack, as the parser keeps them: an end tag closes its element and
/// those opened inside it, unless a table, cell or foreign element stands between them (the
/// parser ignores such an end tag, and so does the scan); a stray end tag closes nothing.
pub fn scan_depth(html: &str, limit: usize) -> usize {
    let b = html.as_bytes();
    // Open elements that count: never more than `limit` + 1.
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut deepest = 0usize;
    // Open <svg> and <math>: inside them `<x/>` closes itself.
    let mut foreign = 0usize;
    let mut i = 0;
    while let Some(at) = find(b, i, b"<") {
        i = at + 1;
        if b[i..].starts_with(b"!--") {
            match find(b, i + 3, b"-->") {
                Some(end) => i = end + 3,
                None => break,
            }
            continue;
        }
        let closing = b.get(i) == Some(&b'/');
        let start = i + usize::from(closing);
        let name_end = start
            + b[start..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-' || **c == b':')
                .count();
        if name_end == start || !b[start].is_ascii_alphabetic() {
            continue;
        }
        let name = html[start..name_end].to_ascii_lowercase();
        let Some(tag_end) = tag_end(b, name_end) else {
            break;
        };
        i = tag_end + 1;
        let self_closed = tag_end > 0 && b[tag_end - 1] == b'/';
        let is_foreign = matches!(name.as_str(), "svg" | "math");
        if closing {
            let Some(at) = open.iter().rposition(|(n, _)| *n == name) else {
                continue;
            };
            if open[at + 1..].iter().any(|(n, _)| is_scope_boundary(n)) {
                continue;
            }
            for (n, w) in open.drain(at..) {
                depth -= w;
                foreign -= usize::from(matches!(n.as_str(), "svg" | "math"));
            }
            continue;
        }
        if self_closed && (foreign > 0 || is_foreign) {
            continue;
        }
        if let Some(raw) = raw_text_end(&name) {
            // Text until the element's end tag: a `<div>` inside a script is no element.
            match find_ascii_ci(b, i, raw) {
                Some(end) => i = end,
                None => break,
            }
            continue;
        }
        if name == "plaintext" {
            break;
        }
        let w = weight(&name);
        if w == 0 {
            continue;
        }
        depth += w;
        deepest = deepest.max(depth);
        if deepest > limit {
            return deepest;
        }
        foreign += usize::from(is_foreign);
        open.push((name, w));
    }
    deepest
}

/// Elements an end tag of another element is not looked for past.
fn is_scope_boundary(name: &str) -> bool {
    matches!(
        name,
        "table"
            | "td"
            | "th"
            | "caption"
            | "template"
            | "object"
            | "marquee"
            | "applet"
            | "svg"
            | "math"
    )
}

/// The deepest element of a parsed page, walked without recursion.
pub fn tree_depth(doc: &Html) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    for edge in doc.tree.root().traverse() {
        match edge {
            Edge::Open(_) => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            Edge::Close(_) => depth = depth.saturating_sub(1),
        }
    }
    deepest
}

/// How much the element may deepen the tree by itself: a table brings the body, row and cell
/// the parser puts in it; void elements and those closed by the next of their kind nothing.
fn weight(name: &str) -> usize {
    if name == "table" {
        return 4;
    }
    let flat = matches!(
        name,
        // Void elements.
        "area" | "base" | "basefont" | "bgsound" | "br" | "col" | "embed" | "frame" | "hr"
            | "img" | "input" | "keygen" | "link" | "meta" | "param" | "source" | "track"
            | "wbr"
            // Closed by the next of their kind, or ignored outside their parent.
            | "p" | "li" | "dt" | "dd" | "option" | "optgroup" | "rb" | "rp" | "rt" | "rtc"
            | "tr" | "td" | "th" | "tbody" | "thead" | "tfoot" | "colgroup" | "caption"
            | "html" | "head" | "body"
    );
    usize::from(!flat)
}

/// The end tag that ends an element whose content is text.
fn raw_text_end(name: &str) -> Option<&'static [u8]> {
    Some(match name {
        "script" => b"</script",
        "style" => b"</style",
        "textarea" => b"</textarea",
        "title" => b"</title",
        "xmp" => b"</xmp",
        "iframe" => b"</iframe",
        "noembed" => b"</noembed",
        "noframes" => b"</noframes",
        _ => return None,
    })
}

/// The `>` that ends a tag whose name ends at `from`, past quoted attribute values.
fn tag_end(b: &[u8], from: usize) -> Option<usize> {
    let mut quote = None;
    for (offset, &c) in b.get(from..)?.iter().enumerate() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None if c == b'>' => return Some(from + offset),
            None => {}
        }
    }
    None
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

fn find_ascii_ci(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Levels the scan leaves out: the document, html, body, a text node, and elements that
    /// close their own kind nested in one another (`li` > `p`, `dd` > `p`, ...).
    const SLACK: usize = 16;

    fn nested(tag: &str, n: usize) -> String {
        format!(
            "<html><body>{}x</body></html>",
            format!("<{tag}>").repeat(n)
        )
    }

    #[test]
    fn the_scan_counts_what_nests_and_skips_what_does_not() {
        assert_eq!(scan_depth(&nested("div", 10), 100), 10);
        assert_eq!(
            scan_depth("<div><div></div><div><span>x</span></div></div>", 9),
            3
        );
        // Unclosed paragraphs, list items, images and line breaks do not deepen a page.
        let untidy = "<p>a<p>b<li>c<li>d<br><img src=x><hr>".repeat(10_000);
        assert_eq!(scan_depth(&untidy, MAX_DEPTH), 0);
        // Tags in comments, scripts and attribute values are no tags.
        let hidden = "<!-- <div><div> --><script>'<div><div>'</script><a title='<div>'>x</a>";
        assert_eq!(scan_depth(hidden, 9), 1);
        // Inside SVG `<g/>` closes itself; outside it `<div/>` opens a div.
        assert_eq!(
            scan_depth(&format!("<svg>{}</svg>", "<g/>".repeat(50)), 9),
            1
        );
        assert_eq!(scan_depth(&"<div/>".repeat(50), 100), 50);
        // It stops counting past the limit.
        assert_eq!(scan_depth(&nested("div", 1_000_000), 10), 11);
        assert_eq!(scan_depth("<table><tr><td>x</td></tr></table>", 9), 4);
    }

    #[test]
    fn the_scan_bounds_the_parsed_depth() {
        for page in [
            nested("div", 300),
            nested("b", 300),
            nested("font", 300),
            "<ul><li>".repeat(200),
            "<table><tr><td>".repeat(100),
            "<li><section>".repeat(100),
            "<option><b>".repeat(100),
        ] {
            let parsed = tree_depth(&Html::parse_document(&page));
            let scanned = scan_depth(&page, usize::MAX);
            assert!(
                parsed <= 2 * scanned + SLACK,
                "{parsed} > 2 x {scanned}: {page:.40}"
            );
        }
    }

    proptest! {
        #[test]
        fn scanning_any_text_never_panics(text in ".{0,400}") {
            let _ = scan_depth(&text, 8);
        }

        #[test]
        fn the_scan_bounds_the_parse_of_tag_soup(
            tags in proptest::collection::vec(
                prop_oneof![
                    Just("<div>"), Just("</div>"), Just("<p>"), Just("<li>"), Just("<ul>"),
                    Just("</ul>"), Just("<b>"), Just("</b>"), Just("<table>"), Just("<td>"),
                    Just("<svg>"), Just("<g/>"), Just("</svg>"), Just("<section>"), Just("x"),
                ],
                0..200,
            )
        ) {
            let page = tags.concat();
            let parsed = tree_depth(&Html::parse_document(&page));
            prop_assert!(parsed <= 2 * scan_depth(&page, usize::MAX) + SLACK);
        }
    }
}
