#!/usr/bin/env python
"""End-to-end accuracy of whole systems (mention finding + linking), one table plus JSON.

Each ``--system`` is a name and the settings of one pipeline: the index it links to, the spaCy pipeline it
runs in front of the linker (a detector of ``linker train-mentions``, or a trained pipeline), and
``concept_linker`` settings. Each ``--dataset`` is documents + gold mentions (+ the types kept). Every system
runs on every dataset; the figures are those of ``linker evaluate --docs``: strict and overlap mention-level
P/R/F1 of (span, concept), the document-level concept P/R/F1 of the BioCreative V CDR disease task, docs/s.

    python scripts/bench_e2e.py \\
        --dataset ncbi-dev:$D/ncbi_disease/dev.docs.jsonl:$D/ncbi_disease/dev.mentions.jsonl \\
        --dataset bc5cdr-dev:$D/bc5cdr/dev.docs.jsonl:$D/bc5cdr/dev.mentions.jsonl:Disease \\
        --alt-ids $D/ctd_medic/medic_alt_ids.tsv \\
        --system 'default;index=indexes/medic-minilm' \\
        --system 'learned;index=indexes/medic-minilm;pipeline=runs/detector;sources=["upstream"]' \\
        --json bench-e2e.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
from pathlib import Path
from typing import Any

from linker.defaults import open_index
from linker.end_to_end import evaluate_end_to_end
from linker.evaluate import index_mapper
from linker.gold import read_mentions


def parse_system(text: str, need_index: bool = True) -> dict[str, Any]:
    name, *settings = [part.strip() for part in text.split(";")]
    system: dict[str, Any] = {"name": name, "index": None, "pipeline": None, "config": {}}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep:
            raise SystemExit(f"--system {text!r}: {setting!r} is not KEY=VALUE")
        if key in {"index", "pipeline"}:
            system[key] = value
        else:
            try:
                system["config"][key] = json.loads(value)
            except json.JSONDecodeError:
                raise SystemExit(f"--system {text!r}: the value of {key} is not JSON: {value}") from None
    if need_index and system["index"] is None:
        raise SystemExit(f"--system {text!r}: give index=DIR")
    return system


def parse_dataset(text: str) -> dict[str, Any]:
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise SystemExit(f"--dataset {text!r}: give NAME:DOCS:MENTIONS[:TYPE,TYPE…]")
    return {"name": parts[0], "docs": parts[1], "mentions": parts[2],
            "types": [t for t in parts[3].split(",") if t] if len(parts) == 4 else []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", action="append", required=True, help="NAME;index=DIR[;pipeline=DIR][;KEY=JSON…]")
    parser.add_argument("--dataset", action="append", required=True, help="NAME:DOCS:MENTIONS[:TYPES]")
    parser.add_argument("--alt-ids", action="append", default=[], help="alt-id map applied to gold and predictions")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("spacy").setLevel(logging.WARNING)
    systems = [parse_system(s) for s in args.system]
    datasets = [parse_dataset(d) for d in args.dataset]
    rows: list[dict[str, Any]] = []
    for system in systems:
        index = open_index(system["index"])
        mapper = index_mapper(index.termdb, args.alt_ids)
        for data in datasets:
            index.embedding_cache.clear()  # docs/s of each system and dataset from a cold query cache
            gold = read_mentions(data["mentions"], data["types"] or None)
            result = evaluate_end_to_end(data["docs"], gold, index, mapper, system["config"],
                                         pipeline=system["pipeline"])
            row = {"system": system["name"], "dataset": data["name"], "index": system["index"],
                   "pipeline": system["pipeline"], "config": system["config"],
                   "strict": result["strict"]["all"], "overlap": result["overlap"]["all"],
                   "document": result["document"], "docs_per_second": result["docs_per_second"],
                   "predicted": result["predicted"], "gold": result["gold"]}
            rows.append(row)
            logging.info("%s on %s: strict F1 %.4f, document F1 %.4f, %.1f docs/s", system["name"], data["name"],
                         row["strict"]["f1"], row["document"]["f1"], row["docs_per_second"] or 0.0)
    header = (f"{'system':<36}{'dataset':<12}{'strict P':>9}{'R':>7}{'F1':>7}{'overlap F1':>11}"
              f"{'doc P':>7}{'R':>7}{'F1':>7}{'docs/s':>8}")
    print(header)
    for row in rows:
        s, o, d = row["strict"], row["overlap"], row["document"]
        print(f"{row['system']:<36}{row['dataset']:<12}{s['precision']:9.4f}{s['recall']:7.4f}{s['f1']:7.4f}"
              f"{o['f1']:11.4f}{d['precision']:7.4f}{d['recall']:7.4f}{d['f1']:7.4f}{row['docs_per_second']:8.1f}")
    base = {row["dataset"]: row["docs_per_second"] for row in rows if row["system"] == systems[0]["name"]}
    print(f"docs/s relative to {systems[0]['name']}: " + ", ".join(
        f"{row['system']}/{row['dataset']} {row['docs_per_second'] / base[row['dataset']]:.2f}" for row in rows
        if base.get(row["dataset"])))
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.platform(), "alt_ids": args.alt_ids,
                                         "datasets": datasets, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
