//! Words and sentences as FineWeb's filters count them. datatrove tokenizes with NLTK
//! (`word_tokenize`, `sent_tokenize`); these follow the same rules where they decide a count:
//! punctuation at a word's edges is a token of its own, and a sentence ends at `.`, `!` or `?`
//! followed by a space or the end of the line.

/// Python's `string.punctuation`.
pub(crate) const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// Whether `token` counts as punctuation, as datatrove tests it (`w in string.punctuation`,
/// a substring test).
pub(crate) fn is_punctuation(token: &str) -> bool {
    !token.is_empty() && PUNCTUATION.contains(token)
}

/// Characters split off a word's start as tokens of their own.
fn opens(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | '(' | '[' | '{' | '<' | '`' | '“' | '‘' | '«'
    )
}

/// Characters split off a word's end as tokens of their own.
fn closes(c: char) -> bool {
    matches!(
        c,
        '.' | ','
            | ';'
            | ':'
            | '!'
            | '?'
            | '"'
            | '\''
            | ')'
            | ']'
            | '}'
            | '>'
            | '”'
            | '’'
            | '»'
            | '…'
    )
}

/// The tokens of `text`: whitespace-separated words with their leading and trailing
/// punctuation split off (`"Hello, world..."` is `Hello` `,` `world` `...`).
pub(crate) fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for word in text.split_whitespace() {
        let mut rest = word;
        while let Some(c) = rest.chars().next().filter(|&c| opens(c)) {
            let (head, tail) = rest.split_at(c.len_utf8());
            out.push(head);
            rest = tail;
        }
        let mut trailing = Vec::new();
        while let Some(c) = rest.chars().next_back().filter(|&c| closes(c)) {
            if rest.ends_with("...") {
                let (head, tail) = rest.split_at(rest.len() - 3);
                trailing.push(tail);
                rest = head;
                continue;
            }
            let (head, tail) = rest.split_at(rest.len() - c.len_utf8());
            trailing.push(tail);
            rest = head;
        }
        if !rest.is_empty() {
            out.push(rest);
        }
        out.extend(trailing.into_iter().rev());
    }
    out
}

/// Sentences in one line: each run of `.`, `!` or `?` followed by whitespace or the line's
/// end closes one; a line with words and no such mark is one sentence.
pub(crate) fn sentences(line: &str) -> usize {
    let chars: Vec<char> = line.trim().chars().collect();
    if chars.is_empty() {
        return 0;
    }
    let mut count = 0;
    let mut i = 0;
    while i < chars.len() {
        if matches!(chars[i], '.' | '!' | '?') {
            while i + 1 < chars.len() && matches!(chars[i + 1], '.' | '!' | '?' | '"' | '\'' | ')')
            {
                i += 1;
            }
            if i + 1 == chars.len() || chars[i + 1].is_whitespace() {
                count += 1;
            }
        }
        i += 1;
    }
    let tail_open = !matches!(chars.last(), Some('.' | '!' | '?' | '"' | '\'' | ')'));
    count + usize::from(tail_open || count == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_at_word_edges_is_split_off() {
        assert_eq!(
            tokens("\"Hello, world...\" (she said) it's 3.5!"),
            [
                "\"", "Hello", ",", "world", "...", "\"", "(", "she", "said", ")", "it's", "3.5",
                "!"
            ]
        );
        assert!(is_punctuation(","));
        // Python's `in` on strings: a substring of `string.punctuation` counts.
        assert!(is_punctuation("./"));
        assert!(!is_punctuation(".."));
        assert!(!is_punctuation("word"));
    }

    #[test]
    fn sentences_end_at_marks_before_space_or_line_end() {
        assert_eq!(sentences("One. Two! Three?"), 3);
        assert_eq!(sentences("Version 3.5 is out. Get it"), 2);
        assert_eq!(sentences("Home About Contact"), 1);
        assert_eq!(sentences("He said \"stop.\" Then left."), 2);
        assert_eq!(sentences(""), 0);
    }
}
