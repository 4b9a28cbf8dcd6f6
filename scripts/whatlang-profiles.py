#!/usr/bin/env python3
"""Writes whatlang's trigram profiles as the compact table that
scraper-node/src/quality/trigrams.rs reads (scraper-node/src/quality/trigram_profiles.txt).

    scripts/whatlang-profiles.py PATH/TO/whatlang-VERSION/src/trigrams/profiles.rs > OUT

Run it again when whatlang is upgraded: the table must be the profiles of the whatlang that
Tessera builds with (a test compares the two detectors). One line per language: its script
group, its ISO 639-3 code, then its trigrams by rank, a space inside a trigram written `_`
(whatlang maps `_` to a space before counting, so it never occurs in a trigram).
"""
import re
import sys

GROUPS = {
    "LATIN_LANGS": "latin",
    "CYRILLIC_LANGS": "cyrillic",
    "ARABIC_LANGS": "arabic",
    "DEVANAGARI_LANGS": "devanagari",
    "HEBREW_LANGS": "hebrew",
}


def main(path):
    source = open(path, encoding="utf-8").read()
    print("# whatlang's trigram profiles (MIT, https://github.com/greyblake/whatlang-rs),")
    print("# written by scripts/whatlang-profiles.py: script group, language, trigrams by rank.")
    group = None
    lang = None
    trigrams = []

    def flush():
        if lang is not None:
            print(group, lang, " ".join(trigrams))

    for line in source.splitlines():
        m = re.match(r"pub static (\w+): LangProfileList", line)
        if m:
            flush()
            group, lang, trigrams = GROUPS[m.group(1)], None, []
            continue
        m = re.match(r"\s*Lang::(\w+),\s*$", line)
        if m:
            flush()
            lang, trigrams = m.group(1).lower(), []
            continue
        m = re.match(r"\s*Trigram\('(.)', '(.)', '(.)'\),\s*$", line)
        if m:
            trigram = "".join(m.groups())
            assert "_" not in trigram, trigram
            trigrams.append(trigram.replace(" ", "_"))
    flush()


if __name__ == "__main__":
    main(sys.argv[1])
