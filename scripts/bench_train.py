#!/usr/bin/env python
"""Figures of issue 6 for given model folders: HPO held-out synonyms → concept, NCBI-disease and BC5CDR dev → MEDIC.

    python scripts/bench_train.py base indexes/train-run/phase1 indexes/train-run/final --json bench-results/train.json

* HPO: index of the preferred names of all concepts of hp.obo; queries = EXACT synonyms of the concepts the
  training split holds out as *test* (same seed and fractions as ``linker train``); acc@1, acc@10.
* NCBI-disease dev (all mention types) and BC5CDR dev (type Disease): index of all MEDIC names (labels and
  synonyms), gold mentions with ids (alt ids resolved through CTD_diseases.tsv); a mention is right when
  the first concept is one of its gold ids. Dense ranking only (the model's own figure); ``+exact`` columns
  put normalised exact name matches first, as ``ConceptIndex.search`` does.
``base`` names the packaged all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DATA = Path("/work/shared/data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model folders, or 'base' for the packaged all-MiniLM-L6-v2")
    parser.add_argument("--hpo", type=Path, default=DATA / "hpo/hp.obo.gz")
    parser.add_argument("--medic", type=Path, default=DATA / "ctd_medic/CTD_diseases.tsv.gz")
    parser.add_argument("--ncbi-dev", type=Path, default=DATA / "ncbi_disease/dev.mentions.jsonl")
    parser.add_argument("--bc5cdr-dev", type=Path, default=DATA / "bc5cdr/dev.mentions.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.05)
    parser.add_argument("--test-fraction", type=float, default=0.05)
    parser.add_argument("--skip", nargs="*", default=[], choices=["hpo", "medic"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", dest="json_out", type=Path, help="also write the results here")
    parser.add_argument("--errors", type=Path, help="write each query's gold and first ten concepts here "
                        "(JSONL: model, task, query, gold, ranked), for error analysis")
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from linker.encoders.torch_backend import TransformerEncoder
    from linker.sources import Source
    from linker.train.evaluate import RankingTask, evaluate, synonym_task
    from linker.train.pairs import read_concepts, read_mentions, split_of

    tasks: list[tuple[RankingTask, bool]] = []
    if "hpo" not in args.skip:
        concepts, _ = read_concepts([Source.open(args.hpo, "obo")])
        split = {cid: split_of(cid, args.seed, args.val_fraction, args.test_fraction) for cid in concepts}
        tasks.append((synonym_task(concepts, split, "test", name="hpo_heldout_synonyms"), False))
    if "medic" not in args.skip:
        medic, alt = read_concepts([Source.open(args.medic, "ctd")])
        texts, ids = [], []
        for cid, c in medic.items():
            for text in c.names(("EXACT", "RELATED", "BROAD", "NARROW")):
                texts.append(text)
                ids.append(cid)
        for name, path, types in (("ncbi_dev", args.ncbi_dev, None), ("bc5cdr_dev", args.bc5cdr_dev, ["Disease"])):
            queries, gold = [], []
            for text, mention_ids in read_mentions(path, types):
                if mention_ids:
                    queries.append(text)
                    gold.append(frozenset(alt.get(i, i) for i in mention_ids))
            tasks.append((RankingTask(name, texts, ids, queries, gold), True))

    results: dict[str, dict] = {}
    error_rows: list[dict] = []
    for model in args.models:
        started = time.perf_counter()
        encoder = TransformerEncoder(None if model == "base" else model, device="cpu", batch_size=128,
                                     threads=args.threads, max_length=64)
        row: dict[str, object] = {}
        cached: dict[int, object] = {}
        for task, with_exact in tasks:
            key = id(task.index_texts)
            if key not in cached:
                cached[key] = encoder.encode(task.index_texts, batch_size=128)
            record: list[dict] | None = [] if args.errors else None
            scores = evaluate(encoder, task, name_vectors=cached[key], record=record)  # type: ignore[arg-type]
            row[task.name] = scores
            error_rows.extend({"model": model, "task": task.name, **entry} for entry in record or ())
            if with_exact:
                row[task.name + "+exact"] = evaluate(encoder, task, ks=(1,), exact_first=True,
                                                     name_vectors=cached[key])  # type: ignore[arg-type]
        row["eval_seconds"] = round(time.perf_counter() - started, 1)
        results[model] = row
        print(f"done {model} in {row['eval_seconds']} s", file=sys.stderr, flush=True)

    if args.errors:
        args.errors.write_text("".join(json.dumps(row) + "\n" for row in error_rows), encoding="utf-8")
    columns = [(t.name, "acc@1") for t, _ in tasks] + [(t.name, "acc@10") for t, ex in tasks if not ex] + \
              [(t.name + "+exact", "acc@1") for t, ex in tasks if ex]
    header = ["model"] + [f"{n} {m}" for n, m in columns] + ["eval s"]
    print(" | ".join(header))
    for model, row in results.items():
        cells = [model] + [f"{row[n][m]:.4f}" for n, m in columns] + [str(row["eval_seconds"])]  # type: ignore[index]
        print(" | ".join(cells))
    queries = {t.name: len(t.queries) for t, _ in tasks}
    print(json.dumps({"queries": queries, "results": results}, indent=1))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"queries": queries, "results": results, "argv": sys.argv}, indent=1))


if __name__ == "__main__":
    main()
