"""Scores main-text extractors on the labelled pages with a token-level F1.

    bench-extract.py PAGES_DIR TESSERA_JSON [OTHERS_JSON] [-v]

TESSERA_JSON is `{"NAME": "text"}`; OTHERS_JSON is `{"EXTRACTOR": {"NAME": "text"}, ...,
"ms_per_page": {"EXTRACTOR": ms}}` (the other Rust extractors). Tokens are the lower-cased
words of a text (runs of letters and digits); a page's precision and recall count the tokens
an extractor's text shares with the hand-marked one, as bags. A page whose marked text is
empty (an index of links) scores 1 when the extractor keeps nothing and 0 otherwise.
trafilatura runs here, on the same pages, as FineWeb ran it.
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
    args = [a for a in sys.argv[1:] if a != "-v"]
    pages = pathlib.Path(args[0])
    outputs = {"tessera": json.loads(pathlib.Path(args[1]).read_text())}
    ms = {}
    if len(args) > 2:
        others = json.loads(pathlib.Path(args[2]).read_text())
        ms = others.pop("ms_per_page", {})
        outputs.update(others)
    outputs["trafilatura (Python)"] = {}
    scores = collections.defaultdict(lambda: collections.defaultdict(list))
    seconds = 0.0
    for html in sorted(pages.glob("*.html")):
        name = html.stem
        want = html.with_suffix(".txt").read_text()
        started = time.perf_counter()
        theirs = trafilatura.extract(html.read_text(), favor_precision=True) or ""
        seconds += time.perf_counter() - started
        outputs["trafilatura (Python)"][name] = theirs
        kind = name.split("-", 1)[-1]
        row = []
        for extractor, texts in outputs.items():
            score = f1(texts.get(name, ""), want)
            scores[extractor][kind].append(score)
            scores[extractor]["all"].append(score)
            row.append(f"{extractor} {score:.3f}")
        if "-v" in sys.argv:
            print(f"{name:28} " + "  ".join(row))
    ms["trafilatura (Python)"] = seconds * 1000 / len(scores["tessera"]["all"])
    names = list(outputs)
    kinds = sorted(k for k in scores["tessera"] if k != "all") + ["all"]
    width = max(len(n) for n in names) + 2
    print(f"{'pages':14} {'n':>4}" + "".join(f"{n:>{width}}" for n in names))
    for kind in kinds:
        cells = "".join(
            f"{sum(scores[n][kind]) / len(scores[n][kind]):>{width}.3f}" for n in names
        )
        print(f"{kind:14} {len(scores['tessera'][kind]):4}{cells}")
    print("ms a page: " + ", ".join(f"{n} {v:.2f}" for n, v in ms.items()))


main()
