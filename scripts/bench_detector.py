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
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--rounds", type=int, default=1, help="timed passes per backend, interleaved; the best kept")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data = []
    for dataset in map(parse_dataset, args.dataset):
        documents = read_documents(dataset["docs"])
        gold = {(m.doc_id, m.start, m.end) for m in read_mentions(dataset["mentions"], dataset["types"] or None) if m.ids}
        data.append((dataset["name"], documents, gold))
    def load(backend: str, batch: int) -> Any:
        nlp = spacy.load(args.detector, config={"components": {"linker_tagger": {"backend": backend,
                                                                                 "batch_size": batch}}})
        nlp("warm up")  # loading (and a first export) is not tagging
        return nlp

    loaded = {backend: load(backend, args.batch) for backend in args.backends}
    others = {backend: load(backend, args.other_batch) for backend in args.backends}  # for the batch comparison
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for round_ in range(args.rounds):  # interleaved rounds, best of N: the host may be shared
        for backend, nlp in loaded.items():
            for name, documents, gold in data:
                texts = [d.text for d in documents]
                started = time.perf_counter()
                found = spans(nlp, texts)
                rate = round(len(texts) / (time.perf_counter() - started), 2)
                row = rows.get((backend, name))
                if row is not None:
                    row["docs_per_second"] = max(row["docs_per_second"], rate)
                    row["rounds"].append(rate)
                    continue
                predicted = {(d.doc_id, s, e) for d, found_spans in zip(documents, found) for s, e in found_spans}
                tp = len(predicted & gold)
                differing = sum(a != b for a, b in zip(found, spans(others[backend], texts)))
                rows[backend, name] = row = {
                    "backend": backend, "dataset": name, "span_f1": round(2 * tp / (len(predicted) + len(gold)), 4),
                    "precision": round(tp / max(len(predicted), 1), 4), "recall": round(tp / max(len(gold), 1), 4),
                    "docs_per_second": rate, "rounds": [rate],
                    f"docs_differing_with_batch_{args.other_batch}": differing, "documents": len(texts)}
            log.info("round %d, %s: %s", round_ + 1, backend, [r["docs_per_second"] for r in rows.values()
                                                               if r["backend"] == backend])
    lines = [f"| backend | dataset | span P / R / F1 | docs/s | docs differing (batch {args.batch} vs "
             f"{args.other_batch}) |", "| --- | --- | --- | ---: | ---: |"]
    lines += [f"| {r['backend']} | {r['dataset']} | {r['precision']} / {r['recall']} / {r['span_f1']} | "
              f"{r['docs_per_second']} | {r[f'docs_differing_with_batch_{args.other_batch}']} of {r['documents']} |"
              for r in rows.values()]
    print("\n".join(lines))
    if args.json:
        record = {"detector": str(args.detector), "machine": f"{platform.machine()}, Python {platform.python_version()}",
                  "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "batch": args.batch,
                  "rounds": args.rounds, "rows": list(rows.values())}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
