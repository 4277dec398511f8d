#!/usr/bin/env python
"""Span-level agreement of systems with gold mentions whose ids come from another ontology (one table plus
JSON): exact character spans, no type, no concept. For a detector labelled with one ontology (say HPO) where
the only annotated text uses another (the disease spans of NCBI-disease and BC5CDR, linked to MEDIC): a
proxy, since the gold spans are diseases, not phenotypes, and phenotypes the gold leaves out count as wrong.

A ``--system`` is ``NAME;index=DIR[;pipeline=DIR][;KEY=JSON…]`` as in ``bench_e2e.py`` (its linked entities
count), or ``NAME;pipeline=DIR`` without an index (a detector alone: every entity it sets counts).

    python scripts/bench_spans.py \\
        --dataset ncbi-dev:$D/ncbi_disease/dev.docs.jsonl:$D/ncbi_disease/dev.mentions.jsonl \\
        --dataset bc5cdr-dev:$D/bc5cdr/dev.docs.jsonl:$D/bc5cdr/dev.mentions.jsonl:Disease \\
        --system 'HPO dictionary;index=indexes/hpo-minilm' --system 'HPO weak detector;pipeline=runs/weak-hpo' \\
        --json docs/results/spans_weak_hpo.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
from pathlib import Path
from typing import Any

from bench_e2e import parse_dataset, parse_system

from linker.gold import read_documents, read_mentions


def load(system: dict[str, Any]) -> Any:
    import spacy

    import linker.mentions.transformer  # noqa: F401 - registers linker_tagger
    from linker.pipeline import load_pipeline

    if system["index"] is None:
        return spacy.load(system["pipeline"])
    return load_pipeline(system["index"], pipeline=system["pipeline"], **system["config"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", action="append", required=True,
                        help="NAME;index=DIR[;pipeline=DIR][;KEY=JSON…] or NAME;pipeline=DIR")
    parser.add_argument("--dataset", action="append", required=True, help="NAME:DOCS:MENTIONS[:TYPES]")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    systems = [parse_system(s, need_index=False) for s in args.system]
    datasets = [parse_dataset(d) for d in args.dataset]
    rows: list[dict[str, Any]] = []
    for system in systems:
        if system["index"] is None and system["pipeline"] is None:
            raise SystemExit(f"--system {system['name']}: give index=DIR, pipeline=DIR or both")
        nlp = load(system)
        for data in datasets:
            docs = read_documents(Path(data["docs"]))
            gold: dict[str, set[tuple[int, int]]] = {}
            for m in read_mentions(data["mentions"], data["types"] or None):
                gold.setdefault(str(m.doc_id), set()).add((m.start, m.end))
            tp = n_pred = n_gold = 0
            for doc, parsed in zip(docs, nlp.pipe(d.text for d in docs)):
                pred = {(e.start_char, e.end_char) for e in parsed.ents if system["index"] is None or e.kb_id_}
                want = gold.get(str(doc.doc_id), set())
                tp, n_pred, n_gold = tp + len(pred & want), n_pred + len(pred), n_gold + len(want)
            p, r = tp / n_pred if n_pred else 0.0, tp / n_gold if n_gold else 0.0
            rows.append({**system, "dataset": data["name"], "tp": tp, "predicted": n_pred, "gold": n_gold,
                         "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0})
    print(f"{'system':<48}{'dataset':<12}{'P':>8}{'R':>8}{'F1':>8}{'predicted':>10}{'gold':>7}")
    for row in rows:
        print(f"{row['name']:<48}{row['dataset']:<12}{row['precision']:8.4f}"
              f"{row['recall']:8.4f}{row['f1']:8.4f}{row['predicted']:>10}{row['gold']:>7}")
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.platform(), "datasets": datasets, "rows": rows},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
