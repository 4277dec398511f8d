#!/usr/bin/env python
"""Accuracy benchmark: concept normalisation with gold mentions, one table, one JSON file.

Datasets
  ncbi-dev        NCBI-disease dev, all mentions, over the CTD MEDIC index (+ medic_alt_ids.tsv)
  bc5cdr-dis-dev  BC5CDR dev, Disease mentions only, over the same MEDIC index (+ medic_alt_ids.tsv)
  hpo-syn         HPO synonym -> concept: every EXACT synonym of a live term in hp.obo as a query,
                  over an index of HPO preferred names only (the synonym itself is not in the index)

Systems
  exact           exact normalised string match over the same dictionary (linker.normalize)
  default         the default model (the model the MEDIC / HPO indexes were built with)
  MODEL           each --model folder: its own indexes are built (once, resumable) from the same sources

Usage
  python scripts/bench_accuracy.py --json results/accuracy.json [--model PATH ...] [--limit N]

Scores follow linker.evaluate's conventions (multi-id mentions correct when any gold id is predicted;
alt ids applied to gold and predictions; mentions with gold ids absent from the index reported apart).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from linker.build import build_index  # noqa: E402
from linker.defaults import indexes_home  # noqa: E402
from linker.evaluate import (  # noqa: E402
    CONVENTIONS,
    evaluate_normalization,
    exact_ranker,
    index_mapper,
    index_ranker,
)
from linker.gold import GoldMention, read_mentions  # noqa: E402
from linker.index import ConceptIndex  # noqa: E402
from linker.sources import Source  # noqa: E402
from linker.types import Term  # noqa: E402

log = logging.getLogger("bench_accuracy")


def hpo_synonym_queries(obo: Path) -> list[GoldMention]:
    """Every EXACT synonym of a live HPO term, as a mention whose gold id is that term."""
    queries = []
    for record in Source.open(obo, "obo").records():
        if isinstance(record, Term) and record.scope == "EXACT":
            queries.append(GoldMention("hp.obo", -1, -1, record.text, (record.concept_id,), record.kind or "EXACT"))
    return queries


def slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", Path(model).name or model).strip("-").lower()


def source_of(index_dir: Path) -> Source:
    """The ontology source an index was built from (as its meta.json records it)."""
    ontology = json.loads((index_dir / "meta.json").read_text())["ontology"]
    options: dict[str, Any] = dict(ontology.get("options") or {})
    if "alt_ids" in options:
        options["alt_ids"] = Path(options["alt_ids"])
    return Source.open(ontology["path"], ontology["format"], **options)


def index_for(model: str | None, base: Path, work: Path, preferred_only: bool) -> Path:
    """*base* for the default model, else an index of the same source built with *model* under *work*."""
    if model is None:
        return base
    out = work / f"{base.name}--{slug(model)}"
    meta = json.loads((base / "meta.json").read_text())
    log.info("building %s with %s (resumable)", out, model)
    return build_index(source_of(base), out, model=model, faiss_kind=meta["build_key"]["faiss_request"],
                       preferred_only=preferred_only, progress=True)


def main() -> int:
    data_default = Path(os.environ.get("LINKER_DATA", "/work/shared/data"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_default, help="shared data folder (default %(default)s)")
    parser.add_argument("--medic-index", type=Path, default=indexes_home() / "medic-minilm")
    parser.add_argument("--hpo-index", type=Path, default=indexes_home() / "hpo-pref-minilm",
                        help="index of HPO preferred names only (linker build hp.obo DIR --preferred-only)")
    parser.add_argument("--obo", type=Path, help="hp.obo for the synonym queries (default: the one the HPO index was built from)")
    parser.add_argument("--model", action="append", default=[], help="model folder to compare (repeatable)")
    parser.add_argument("--work", type=Path, default=indexes_home() / "bench",
                        help="where indexes for --model are built (default %(default)s)")
    parser.add_argument("--datasets", default="ncbi-dev,bc5cdr-dis-dev,hpo-syn")
    parser.add_argument("--no-exact", action="store_true", help="skip the exact-match baseline")
    parser.add_argument("--no-default", action="store_true", help="skip the default model")
    parser.add_argument("--limit", type=int, help="first N mentions of each dataset (quick runs)")
    parser.add_argument("--json", type=Path, help="write all records here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    medic_alt = args.data / "ctd_medic" / "medic_alt_ids.tsv"
    datasets: dict[str, tuple[Path, Any, list[Path], bool]] = {
        "ncbi-dev": (args.medic_index, lambda: read_mentions(args.data / "ncbi_disease" / "dev.mentions.jsonl"),
                     [medic_alt], False),
        "bc5cdr-dis-dev": (args.medic_index,
                           lambda: read_mentions(args.data / "bc5cdr" / "dev.mentions.jsonl", ["Disease"]),
                           [medic_alt], False),
        "hpo-syn": (args.hpo_index, lambda: hpo_synonym_queries(args.obo or source_of(args.hpo_index).path),
                    [], True),
    }
    chosen = [name.strip() for name in args.datasets.split(",") if name.strip()]
    for name in chosen:
        if name not in datasets:
            parser.error(f"unknown dataset {name}; choose from {', '.join(datasets)}")
        if not (datasets[name][0] / "meta.json").exists():
            parser.error(f"no index at {datasets[name][0]} (needed by {name}); build it as indexes/README.md says "
                         "or set LINKER_INDEXES")
    systems: list[tuple[str, str | None, bool]] = []
    if not args.no_exact:
        systems.append(("exact", None, True))
    if not args.no_default:
        systems.append(("default", None, False))
    systems += [(args_model, args_model, False) for args_model in args.model]

    records = []
    for name in chosen:
        base, load, alt_files, preferred_only = datasets[name]
        mentions = load()
        if args.limit:
            mentions = mentions[:args.limit]
        for label, model, exact in systems:
            folder = index_for(model, base, args.work, preferred_only)
            index = ConceptIndex.load(folder)
            mapper = index_mapper(index.termdb, alt_files)
            ranker = exact_ranker(index.termdb) if exact else index_ranker(index)
            log.info("%s / %s: %d mentions", name, label, len(mentions))
            result = evaluate_normalization(mentions, ranker, mapper)
            records.append({"dataset": name, "system": label,
                            "model": "exact normalised string match" if exact else index.meta["encoder"]["model"],
                            "index": str(folder), "alt_ids": [str(a) for a in alt_files], **result})
    table = format_table(records)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "benchmark": "accuracy", "conventions": CONVENTIONS, "limit": args.limit,
            "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv),
            "table": table, "records": records}, indent=2, ensure_ascii=False) + "\n")
    return 0


def format_table(records: list[dict[str, Any]]) -> str:
    head = (f"| {'dataset':<15}| {'system':<28}| {'scored':>6} | {'absent':>6} | {'acc@1':>6} | {'acc@5':>6} | "
            f"{'MRR':>6} | {'acc@1 all':>9} | {'ment/s':>9} |")
    lines = [head, "|" + "|".join("-" * (len(cell)) for cell in head.split("|")[1:-1]) + "|"]
    for r in records:
        c, m = r["counts"], r["metrics"]
        system = r["system"] if len(r["system"]) <= 27 else "…" + r["system"][-26:]
        lines.append(f"| {r['dataset']:<15}| {system:<28}| {c['scored']:>6} | {c['absent']:>6} | {m['acc@1']:>6.4f} | "
                     f"{m['acc@5']:>6.4f} | {m['mrr']:>6.4f} | {m['acc@1_all']:>9.4f} | {r['mentions_per_second']:>9} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
