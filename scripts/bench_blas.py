#!/usr/bin/env python
"""Where FAISS's BLAS path beats its query-by-query scan on this machine, one table plus JSON.

An exhaustive (flat) search of nq queries either scans the vectors query by query or computes one matrix
product through BLAS; FAISS picks by ``faiss.cvar.distance_compute_blas_threshold``. This times both paths,
forced, on the vectors of one index folder, for several batch sizes and OpenMP thread counts (best of
``--repeats``), the queries being the index's own vectors with a little noise. It is the measurement behind
``linker.faiss_util.BLAS_BATCH``.

    python scripts/bench_blas.py /work/idx/medic-onnx --json bench-blas.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from linker.faiss_util import read


def best_ms(index: faiss.Index, queries: np.ndarray, k: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        index.search(queries, k)
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path, help="an index folder with a flat faiss.index")
    parser.add_argument("-k", type=int, default=80, help="names asked per query (the linker asks 16k, at least 32)")
    parser.add_argument("--batches", default="1,2,3,4,8,16,64,242", help="query counts, comma-separated")
    parser.add_argument("--threads", default="1,2", help="OpenMP thread counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    index = read(str(args.index / "faiss.index"))
    if not isinstance(index, faiss.IndexFlat):
        raise SystemExit(f"{args.index}: not a flat index ({type(index).__name__}); the BLAS switch is the flat scan's")
    batches = [int(b) for b in args.batches.split(",")]
    rng = np.random.default_rng(0)
    picks = rng.choice(index.ntotal, max(batches), replace=False)
    queries = np.stack([index.reconstruct(int(i)) for i in picks])
    queries += 0.05 * rng.standard_normal(queries.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    default = faiss.cvar.distance_compute_blas_threshold
    rows: list[dict[str, Any]] = []
    try:
        for threads in (int(t) for t in args.threads.split(",")):
            faiss.omp_set_num_threads(threads)
            for nq in batches:
                batch = np.ascontiguousarray(queries[:nq])
                faiss.cvar.distance_compute_blas_threshold = 2**31 - 1  # never BLAS
                scan = best_ms(index, batch, args.k, args.repeats)
                faiss.cvar.distance_compute_blas_threshold = 0  # always BLAS
                blas = best_ms(index, batch, args.k, args.repeats)
                rows.append({"threads": threads, "queries": nq, "scan_ms": scan, "blas_ms": blas,
                             "blas_speedup": round(scan / blas, 2) if blas else None})
    finally:
        faiss.cvar.distance_compute_blas_threshold = default
    lines = [f"{index.ntotal} x {index.d} vectors of {args.index}, k={args.k}, best of {args.repeats}; FAISS "
             f"{faiss.__version__} (default threshold {default})", "",
             "| threads | queries | scan ms | BLAS ms | scan / BLAS |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['threads']} | {r['queries']} | {r['scan_ms']} | {r['blas_ms']} | {r['blas_speedup']} |" for r in rows]
    print("\n".join(lines))
    if args.json:
        record = {"benchmark": "bench_blas", "index": str(args.index), "vectors": index.ntotal, "dimension": index.d,
                  "k": args.k, "faiss": faiss.__version__, "default_threshold": default,
                  "machine": {"platform": platform.platform(), "processor": platform.processor()}, "rows": rows}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
