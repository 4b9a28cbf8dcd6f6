"""datatrove's FineWeb pipeline after extraction (language filter, Gopher, C4 and FineWeb
filters, PII formatter, MinHash signatures) over a JSON-lines file of texts, on one process, as
scripts/bench-filters runs it beside Tessera's.

    bench-filters.py make CORPUS_DIR REPEATS OUT.jsonl    (the labelled set's marked texts)
    bench-filters.py run DOCS.jsonl LID_MODEL             (prints the same JSON as Tessera's)

FineWeb's settings: English at a fastText score of 0.65 or more (LID_MODEL is lid.176.ftz, the
compressed lid.176.bin, given in place of datatrove's download), Gopher repetition and quality
with their defaults, C4 without the terminal-punctuation rule, FineWeb's own filter, PII,
MinHash of 5-grams in 14 buckets of 8. English words come from spaCy's rule-based tokenizer (no
model to download), as datatrove 0.10 does.
"""

import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def make(corpus, repeats, out):
    texts = []
    for path in sorted(Path(corpus).glob("*.txt")):
        text = path.read_text()
        if text.strip():
            texts.append(text)
    with open(out, "w") as f:
        for r in range(repeats):
            for i, text in enumerate(texts):
                f.write(json.dumps({"id": f"{r}-{i}", "text": text}) + "\n")


def run(docs_path, model_path):
    from datatrove.data import Document
    from datatrove.pipeline.dedup import MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from fasttext.FastText import _FastText

    with open(docs_path) as f:
        docs = [json.loads(line) for line in f if line.strip()]

    def once(docs, out_dir):
        dropped = Counter()
        kept = 0
        language = LanguageFilter(languages=["en"], language_threshold=0.65)
        language.model._model = _FastText(model_path)  # the model datatrove would download
        steps = [
            language,
            GopherRepetitionFilter(),
            GopherQualityFilter(),
            C4QualityFilter(filter_no_terminal_punct=False),
            FineWebQualityFilter(),
        ]
        pii = PIIFormatter()
        sig = MinhashDedupSignature(output_folder=out_dir, config=MinhashConfig())

        def kept_docs():
            nonlocal kept
            for d in docs:
                doc = Document(text=d["text"], id=d["id"])
                for step in steps:
                    result = step.filter(doc)
                    ok, reason = result if isinstance(result, tuple) else (result, None)
                    if not ok:
                        dropped[reason or type(step).__name__] += 1
                        break
                else:
                    doc.text = pii.format(doc.text)
                    kept += 1
                    yield doc

        sig.run(kept_docs(), rank=0, world_size=1)
        return kept, dropped

    with tempfile.TemporaryDirectory() as tmp:
        once(docs[:50], f"{tmp}/warm")  # loads spaCy's tokenizer
        start = time.perf_counter()
        kept, dropped = once(docs, f"{tmp}/timed")
        seconds = time.perf_counter() - start
    print(json.dumps({"pages": len(docs), "seconds": seconds, "kept": kept, "dropped": dict(dropped)}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        run(sys.argv[2], sys.argv[3])
