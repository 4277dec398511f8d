#!/usr/bin/env python
"""End-to-end benchmark of the concept_linker pipeline on a JSONL corpus (e.g. NCBI-disease + a MEDIC index).

Scores (span, concept) pairs with strict and overlapping span matching for each mention source alone and
combined, and measures documents/s with 1 and 2 processes. Prints a table and writes JSON.

    python scripts/bench_pipeline.py \\
        --docs ../shared/data/ncbi_disease/dev.docs.jsonl --mentions ../shared/data/ncbi_disease/dev.mentions.jsonl \\
        --alt-ids ../shared/data/ctd_medic/medic_alt_ids.tsv --index indexes/medic-minilm --json bench.json

``upstream`` has no NER in a blank pipeline, so it is scored with the *gold spans* put into ``doc.ents``
(an oracle NER): it measures linking alone. ``--sweep`` scores a grid of thresholds for the combined
sources from one embedding pass (use it on a *train* split to choose defaults, never on dev).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

from spacy.util import minibatch

from linker.metrics import Annotation, evaluate
from linker.pipeline import doc_mentions, load_pipeline

CONFIGS: dict[str, dict[str, Any]] = {
    "upstream (gold spans)": {"sources": ["upstream"]},
    "dictionary": {"sources": ["dictionary"]},
    "dense": {"sources": ["dense"]},
    "dictionary+dense": {"sources": ["dictionary", "dense"]},
    "default": {},
}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_alt_ids(path: Path | None) -> dict[str, list[str]]:
    mapping: dict[str, list[str]] = {}
    if path is None:
        return mapping
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.rstrip("\n").split("\t")
        if len(parts) >= 2 and parts[0] and not line.startswith("#"):
            mapping.setdefault(parts[0], []).append(parts[1])
    return mapping


def run_config(name: str, config: dict[str, Any], index: str, docs: list[dict[str, Any]],
               gold: list[dict[str, Any]], batch_size: int) -> tuple[list[Annotation], float]:
    nlp = load_pipeline(index, **config)
    nlp("warm up: fever")  # the encoder loads on the first search
    spacy_docs = [nlp.make_doc(d["text"]) for d in docs]
    if name.startswith("upstream"):
        by_doc: dict[str, list[dict[str, Any]]] = {}
        for m in gold:
            by_doc.setdefault(m["doc_id"], []).append(m)
        for record, doc in zip(docs, spacy_docs):
            spans = [doc.char_span(m["start"], m["end"], label="GOLD", alignment_mode="expand")
                     for m in sorted(by_doc.get(record["doc_id"], []), key=lambda m: (m["start"], -m["end"]))]
            kept, last = [], -1
            for span in spans:
                if span is not None and span.start >= last:
                    kept.append(span)
                    last = span.end
            doc.ents = kept
    start = time.perf_counter()
    linker = nlp.get_pipe("concept_linker")
    processed = list(linker.pipe(spacy_docs, batch_size=batch_size))
    seconds = time.perf_counter() - start
    preds = [Annotation(record["doc_id"], m.start, m.end, (m.concept_id,))
             for record, doc in zip(docs, processed) for m in doc_mentions(doc) if m.concept_id]
    return preds, seconds


def throughput(index: str, texts: list[str], n_process: int, batch_size: int, config: dict[str, Any]) -> float:
    nlp = load_pipeline(index, **config)
    nlp("warm up: fever")
    start = time.perf_counter()
    count = sum(1 for _ in nlp.pipe(texts, batch_size=batch_size, n_process=n_process))
    return count / (time.perf_counter() - start)


def sweep(index: str, docs: list[dict[str, Any]], gold_ann: list[Annotation], id_map: dict[str, list[str]],
          batch_size: int, thresholds: list[float], dense_thresholds: list[float]) -> list[dict[str, Any]]:
    """Strict/overlap F1 of dictionary+dense over a grid of (threshold, dense_threshold), embedding once."""
    nlp = load_pipeline(index, sources=["dictionary", "dense"])
    linker = nlp.get_pipe("concept_linker")
    spacy_docs = [nlp.make_doc(d["text"]) for d in docs]
    proposals, found = [], {}
    for batch in minibatch(spacy_docs, size=batch_size):
        props = [linker._proposals(doc, doc.text) for doc in batch]
        queries = [q for q in dict.fromkeys(p.query for ps in props for p in ps if p.query.strip()) if q not in found]
        found.update(linker._search(queries))
        proposals += props
    rows = []
    for threshold in thresholds:
        for dense_threshold in dense_thresholds:
            linker.threshold, linker.dense_threshold = threshold, dense_threshold
            preds = [Annotation(record["doc_id"], p.start, p.end, (cands[0].concept_id,))
                     for record, props in zip(docs, proposals) for p, cands in linker._choose(props, found)
                     if cands and cands[0].score >= threshold]
            scores = evaluate(preds, gold_ann, id_map=id_map)
            rows.append({"threshold": threshold, "dense_threshold": dense_threshold,
                         "strict_f1": scores["strict"]["f1"], "overlap_f1": scores["overlap"]["f1"],
                         "strict_p": scores["strict"]["precision"], "strict_r": scores["strict"]["recall"]})
            logging.info("sweep %s", rows[-1])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=Path, required=True)
    parser.add_argument("--mentions", type=Path, required=True)
    parser.add_argument("--alt-ids", type=Path, help="alt_id<TAB>primary_id map applied to gold ids")
    parser.add_argument("--index", required=True, help="index folder (e.g. indexes/medic-minilm)")
    parser.add_argument("--limit", type=int, help="first N documents only")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of: {', '.join(CONFIGS)}")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--speed-config", default="default", help="config timed with 1 and 2 processes")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="threshold grid for dictionary+dense instead")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=JSON",
                        help="component setting for every config, e.g. --set acronyms=true (repeatable)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("spacy").setLevel(logging.WARNING)

    for override in args.overrides:
        key, _, value = override.partition("=")
        for config in CONFIGS.values():
            config[key] = json.loads(value)
    docs = read_jsonl(args.docs)[:args.limit] if args.limit else read_jsonl(args.docs)
    doc_ids = {d["doc_id"] for d in docs}
    gold = [m for m in read_jsonl(args.mentions) if m["doc_id"] in doc_ids]
    id_map = read_alt_ids(args.alt_ids)
    gold_ann = [Annotation(m["doc_id"], m["start"], m["end"], tuple(m["ids"]), m.get("type")) for m in gold]
    result: dict[str, Any] = {"docs": str(args.docs), "mentions": str(args.mentions), "index": args.index,
                              "n_docs": len(docs), "n_gold": len(gold), "machine": platform.platform(),
                              "overrides": args.overrides,
                              "configs": {}}
    if args.sweep:
        result["sweep"] = sweep(args.index, docs, gold_ann, id_map, args.batch_size,
                                [0.6, 0.7, 0.75, 0.8, 0.85, 0.9], [0.8, 0.85, 0.88, 0.9, 0.93, 0.95])
        best = max(result["sweep"], key=lambda r: r["strict_f1"])
        print(f"best strict F1 {best['strict_f1']:.3f} at threshold={best['threshold']} "
              f"dense_threshold={best['dense_threshold']}")
    else:
        for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
            preds, seconds = run_config(name, CONFIGS[name], args.index, docs, gold, args.batch_size)
            scores = evaluate(preds, gold_ann, id_map=id_map)
            result["configs"][name] = {"config": CONFIGS[name], "seconds": seconds, "n_pred": len(preds), **scores}
            logging.info("%s: strict F1 %.3f, overlap F1 %.3f (%.1fs)", name, scores["strict"]["f1"],
                         scores["overlap"]["f1"], seconds)
        if not args.no_speed:
            texts = [d["text"] for d in docs]
            result["speed"] = {"config": args.speed_config}
            for n_process in (1, 2):
                result["speed"][f"docs_per_s_{n_process}proc"] = throughput(
                    args.index, texts, n_process, args.batch_size, CONFIGS[args.speed_config])
        print(f"{len(docs)} docs, {len(gold)} gold mentions ({args.docs.name}), index {args.index}")
        print(f"{'sources':<24} {'strict P':>8} {'R':>6} {'F1':>6}   {'overlap P':>9} {'R':>6} {'F1':>6}   {'pred':>5}")
        for name, row in result["configs"].items():
            s, o = row["strict"], row["overlap"]
            print(f"{name:<24} {s['precision']:8.3f} {s['recall']:6.3f} {s['f1']:6.3f}   "
                  f"{o['precision']:9.3f} {o['recall']:6.3f} {o['f1']:6.3f}   {row['n_pred']:5d}")
        if "speed" in result:
            speed = result["speed"]
            print(f"docs/s ({speed['config']}): 1 process {speed['docs_per_s_1proc']:.1f}, "
                  f"2 processes {speed['docs_per_s_2proc']:.1f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
