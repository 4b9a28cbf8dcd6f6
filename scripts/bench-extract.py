"""Scores main-text extractors on the labelled pages with a token-level F1.

    bench-extract.py PAGES_DIR TESSERA_JSON

Tokens are the lower-cased words of a text (runs of letters and digits); a page's precision
and recall count the tokens an extractor's text shares with the hand-marked one, as bags.
A page whose marked text is empty (an index of links) scores 1 when the extractor keeps
nothing and 0 otherwise. trafilatura runs here, on the same pages, as FineWeb ran it.
"""

import collections
import json
import pathlib
import re
import sys
import time

import trafilatura


def tokens(text):
    return re.findall(r"\w+", text.lower())


def f1(got, want):
    got, want = collections.Counter(tokens(got)), collections.Counter(tokens(want))
    if not want:
        return 1.0 if not got else 0.0
    common = sum((got & want).values())
    if not common:
        return 0.0
    precision, recall = common / sum(got.values()), common / sum(want.values())
    return 2 * precision * recall / (precision + recall)


def main():
    pages, tessera = pathlib.Path(sys.argv[1]), json.loads(pathlib.Path(sys.argv[2]).read_text())
    scores = collections.defaultdict(lambda: collections.defaultdict(list))
    seconds = 0.0
    for html in sorted(pages.glob("*.html")):
        name = html.stem
        want = html.with_suffix(".txt").read_text()
        started = time.perf_counter()
        theirs = trafilatura.extract(html.read_text(), favor_precision=True) or ""
        seconds += time.perf_counter() - started
        kind = name.split("-", 1)[-1]
        for extractor, got in (("tessera", tessera.get(name, "")), ("trafilatura", theirs)):
            score = f1(got, want)
            scores[extractor][kind].append(score)
            scores[extractor]["all"].append(score)
        if "-v" in sys.argv:
            print(f"{name:28} tessera {f1(tessera.get(name, ''), want):.3f}  "
                  f"trafilatura {f1(theirs, want):.3f}")
    kinds = sorted(k for k in scores["tessera"] if k != "all") + ["all"]
    print(f"{'pages':14} {'n':>4} {'tessera F1':>11} {'trafilatura F1':>15}")
    for kind in kinds:
        t, r = scores["tessera"][kind], scores["trafilatura"][kind]
        print(f"{kind:14} {len(t):4} {sum(t) / len(t):11.3f} {sum(r) / len(r):15.3f}")
    print(f"trafilatura: {seconds * 1000 / len(scores['tessera']['all']):.2f} ms a page")


main()
