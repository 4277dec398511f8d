"""The transformer detector under each backend, in one run: exact-span F1 against the gold spans, docs/s, and
whether a document's spans depend on the batch it was tagged in (one table plus JSON).

    python scripts/bench_detector.py runs/medic-pipeline/.work/detector \
        --dataset ncbi-dev:../shared/data/ncbi_disease/dev.docs.jsonl:../shared/data/ncbi_disease/dev.mentions.jsonl \
        --dataset bc5cdr-dev:../shared/data/bc5cdr/dev.docs.jsonl:../shared/data/bc5cdr/dev.mentions.jsonl:Disease \
        --json docs/results/detector_backends.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import spacy
from bench_e2e import parse_dataset  # the same NAME:DOCS:MENTIONS[:TYPES] datasets as the end-to-end benchmark

from linker.gold import read_documents, read_mentions

log = logging.getLogger("bench_detector")
BACKENDS = ("torch", "onnx-float32", "onnx-int8")


def spans(nlp: Any, texts: list[str]) -> list[list[tuple[int, int]]]:
    return [[(e.start_char, e.end_char) for e in doc.ents] for doc in nlp.pipe(texts, batch_size=64)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("detector", type=Path, help="a detector pipeline folder (linker train-mentions)")
    parser.add_argument("--dataset", action="append", required=True,
                        help="NAME:DOCS.jsonl:MENTIONS.jsonl[:TYPE,...] (gold spans of those types, all if none)")
    parser.add_argument("--batch", type=int, default=16, help="windows per batch for the figures")
    parser.add_argument("--other-batch", type=int, default=3, help="windows per batch for the comparison")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data = []
    for dataset in map(parse_dataset, args.dataset):
        documents = read_documents(dataset["docs"])
        gold = {(m.doc_id, m.start, m.end) for m in read_mentions(dataset["mentions"], dataset["types"] or None) if m.ids}
        data.append((dataset["name"], documents, gold))
    rows: list[dict[str, Any]] = []
    for backend in BACKENDS:
        def load(batch: int) -> Any:
            nlp = spacy.load(args.detector, config={"components": {"linker_tagger": {"backend": backend,
                                                                                     "batch_size": batch}}})
            nlp("warm up")  # loading (and a first export) is not tagging
            return nlp

        nlp, other = load(args.batch), load(args.other_batch)
        for name, documents, gold in data:
            texts = [d.text for d in documents]
            started = time.perf_counter()
            found = spans(nlp, texts)
            seconds = time.perf_counter() - started
            predicted = {(d.doc_id, s, e) for d, row in zip(documents, found) for s, e in row}
            tp = len(predicted & gold)
            differing = sum(a != b for a, b in zip(found, spans(other, texts)))
            row = {"backend": backend, "dataset": name, "span_f1": round(2 * tp / (len(predicted) + len(gold)), 4),
                   "precision": round(tp / max(len(predicted), 1), 4), "recall": round(tp / max(len(gold), 1), 4),
                   "docs_per_second": round(len(texts) / seconds, 2),
                   f"docs_differing_with_batch_{args.other_batch}": differing, "documents": len(texts)}
            log.info("%s", row)
            rows.append(row)
    lines = [f"| backend | dataset | span P / R / F1 | docs/s | docs differing (batch {args.batch} vs "
             f"{args.other_batch}) |", "| --- | --- | --- | ---: | ---: |"]
    lines += [f"| {r['backend']} | {r['dataset']} | {r['precision']} / {r['recall']} / {r['span_f1']} | "
              f"{r['docs_per_second']} | {r[f'docs_differing_with_batch_{args.other_batch}']} of {r['documents']} |"
              for r in rows]
    print("\n".join(lines))
    if args.json:
        record = {"detector": str(args.detector), "machine": f"{platform.machine()}, Python {platform.python_version()}",
                  "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "batch": args.batch, "rows": rows}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
