#!/usr/bin/env python
"""Scale benchmark: synthetic ontologies of N names built with each index kind; one table plus JSON.

Vectors keep the neighbour structure of a real index: name i gets
``normalise(v[i mod n] + 0.3 v[(i + 7919 floor(i / n) + 13) mod n] + 0.05 g_i)`` where v are the n name
vectors of a real index (``--base-index``, e.g. MEDIC's 78k) and g_i a random direction of norm about 1 fixed
by i (two unit rows of a seeded Gaussian table): copies of real names, each copy pulled towards a different real name and jittered, so
neighbourhoods are as dense and as uneven as in the real index.
Names are ``syn <i>``, three per concept. Each build runs ``linker.build.build_index`` (the real,
streamed build) with an encoder that returns those vectors, in its own process, so its peak RSS is its own;
then a fresh process loads the index (cold load: ``ConceptIndex.load`` + FAISS + the concept arrays),
times 200 single queries (p50/p99, warm) and a batch of 1,000 through ``search_vectors``, and reports its
peak RSS. It does so twice: first with the index folder's files evicted from the page cache
(``posix_fadvise(DONTNEED)``: a start from disk, whatever the build left cached), then again with the pages
the first run read still cached (a server that has read its index once); the table shows both, disk / cached.
The queries are real: 1,000 distinct mention texts of ``--mentions`` (e.g. NCBI-disease and BC5CDR dev) embedded by the base index's encoder, so they sit where mentions sit near real names. Two
recalls against an exact search: the one the build measured (on 500 other mention texts, or on
``--calibration`` texts of ``--calibration-mentions``, which the build calibrates its compressed index on:
``build_index(calibration=…)``, half tuned on, half reported on) and wrote into meta.json, and, from a third process (so its reads of the vectors do not count in the search's RSS), the
mention queries' recall@1/@10 at the name level.

    python scripts/bench_scale.py --base-index /work/idx/medic-onnx --sizes 100000,1000000 \\
        --mentions ../shared/data/ncbi_disease/dev.mentions.jsonl ../shared/data/bc5cdr/dev.mentions.jsonl \\
        --work bench-work/scale --json docs/results/scale.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
log = logging.getLogger("bench_scale")
PRESETS = ("flat", "ivf-sq8", "hnsw-sq8", "ivf-pq")
NAMES_PER_CONCEPT = 3
JITTER_ROWS = 16_384
#: Query vectors (mention embeddings); the first SINGLE are also timed one by one; recall is @RECALL_K.
QUERIES = 1000
SINGLE = 200
RECALL_K = 10
#: Mention vectors, other than the queries, that each build calibrates its compressed index on.
CALIBRATION = 500
CALIBRATION_FILE = "calibration.npy"


class SyntheticEncoder:
    """``syn <i>`` -> the i-th synthetic vector (see the module docstring); anything else -> a perturbed real vector."""

    def __init__(self, base: np.ndarray) -> None:
        self.base = base
        self.dimension = base.shape[1]
        self.name = "synthetic"
        jitter = np.random.default_rng(0).standard_normal((JITTER_ROWS, self.dimension)).astype(np.float32)
        self.jitter = jitter / np.linalg.norm(jitter, axis=1, keepdims=True)  # unit rows: g_i has norm about 1

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        n = len(self.base)
        ids = np.asarray(ids, dtype=np.int64)
        partner = (ids + 7919 * (ids // n) + 13) % n  # each copy of a real name is pulled towards a different one
        # g_i: the sum of two rows of a fixed Gaussian table, a different pair for every i below JITTER_ROWS**2
        first, second = ids % JITTER_ROWS, (31 * ids + 7919 * (ids // JITTER_ROWS)) % JITTER_ROWS
        noise = (self.jitter[first] + self.jitter[second]) / np.sqrt(2)
        out = self.base[ids % n] + 0.3 * self.base[partner] + 0.05 * noise
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    def encode(self, texts: list[str], *, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        ids = np.array([int(t.split()[1]) if t.startswith("syn ") else hash(t) % 10**9 for t in texts], dtype=np.int64)
        return self.vectors(ids)

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "dimension": self.dimension, "pooling": "mean", "normalized": True, "max_length": 32}


def base_vectors(index_dir: Path) -> np.ndarray:
    import faiss

    index = faiss.read_index(str(index_dir / "faiss.index"))
    return index.reconstruct_n(0, index.ntotal)


def ontology(size: int, folder: Path) -> Path:
    path = folder / f"synthetic-{size}.tsv"
    if not path.exists():
        with path.open("w") as fh:
            for i in range(size):
                fh.write(f"S{i // NAMES_PER_CONCEPT:08d}\tsyn {i}\t{int(i % NAMES_PER_CONCEPT == 0)}\n")
    return path


def anon_peak() -> Callable[[], float]:
    """Start sampling the process's anonymous resident memory (``RssAnon``: its own heap, not the pages of
    files it maps, which ``ru_maxrss`` also counts) every 0.2 s; the returned function gives the peak in MiB."""
    peak = [0.0]

    def sample() -> None:
        while True:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    peak[0] = max(peak[0], int(line.split()[1]) / 1024)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    return lambda: round(peak[0], 1)


def child_build(args: argparse.Namespace) -> None:
    from linker.build import build_index
    from linker.sources import Source

    peak = anon_peak()
    encoder = SyntheticEncoder(base_vectors(args.base_index))
    started = time.perf_counter()
    calibration = np.load(args.calibration_file)
    build_index(Source.open(args.source), args.out, encoder=encoder, faiss_kind=args.preset, progress=False, force=True,
                calibration=calibration)
    print(json.dumps({"build_s": round(time.perf_counter() - started, 1), "build_peak_anon_mib": peak(),
                      "build_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def child_search(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    peak = anon_peak()
    from linker import rescoring
    from linker.index import ConceptIndex

    index = ConceptIndex.load(args.out)
    index.faiss  # noqa: B018 - read on first use
    index._concept_table()
    cold = time.perf_counter() - started
    queries = np.load(args.queries)
    texts = [f"query {i}" for i in range(len(queries))]
    for i in range(20):  # warm
        index.search_vectors(queries[i:i + 1], texts[i:i + 1], 5)
    times = []
    for i in range(SINGLE):
        t = time.perf_counter()
        index.search_vectors(queries[i:i + 1], texts[i:i + 1], 5)
        times.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    index.search_vectors(queries, texts, 5)
    batch = len(queries) / (time.perf_counter() - t)
    # the names each query gets, as every search asks for them (shortlist re-scored), for recall against exact
    shortlist = index.meta["faiss"].get("rescore") or rescoring.SHORTLIST
    _, found = rescoring.search(index.faiss, index._rescoring_vectors(), queries, RECALL_K, shortlist)
    np.save(args.out / "found.npy", found)
    print(json.dumps({"cold_load_s": round(cold, 2), "p50_ms": round(float(np.percentile(times, 50)), 2),
                      "p99_ms": round(float(np.percentile(times, 99)), 2), "batch_queries_per_s": round(batch, 1),
                      "search_peak_anon_mib": peak(),
                      "search_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def child_truth(args: argparse.Namespace) -> None:
    """recall@1/@10 of the names the search child found against an exact search over the float16 vectors (a
    compressed index), or over the float32 vectors an uncompressed approximate index (a graph) holds itself."""
    from linker import rescoring

    if (args.out / rescoring.VECTORS_FILE).exists():
        vectors = np.load(args.out / rescoring.VECTORS_FILE, mmap_mode="r")
    else:
        import faiss

        index = faiss.read_index(str(args.out / "faiss.index"))
        vectors = index.reconstruct_n(0, index.ntotal)
    truth = rescoring.exact_top(np.load(args.queries), lambda rows: vectors[rows].astype(np.float32),
                                np.arange(len(vectors)), RECALL_K)
    found = np.load(args.out / "found.npy")
    at1 = float(np.mean(found[:, 0] == truth[:, 0]))
    at10 = float(np.mean([len(set(f) & set(t)) / RECALL_K for f, t in zip(found.tolist(), truth.tolist())]))
    print(json.dumps({"mention_recall@1": round(at1, 4), "mention_recall@10": round(at10, 4)}))


def shuffled_texts(files: list[Path]) -> list[str]:
    """The distinct mention texts of *files* (docs + mentions JSONL), in a seeded shuffle."""
    texts = sorted({json.loads(line)["text"] for path in files for line in path.open() if line.strip()})
    return [texts[i] for i in np.random.default_rng(0).permutation(len(texts))]


def embed(base_index: Path, texts: list[str]) -> np.ndarray:
    from linker.index import ConceptIndex

    return np.ascontiguousarray(ConceptIndex.load(base_index).encoder.encode(texts), dtype=np.float32)


def mention_queries(base_index: Path, files: list[Path], out: Path, n: int) -> Path:
    """The embeddings of the first *n* shuffled mention texts of *files*, made with the base index's own
    encoder: the queries every search child runs; :data:`CALIBRATION` more, other texts, are what each build
    calibrates on unless ``--calibration-mentions`` are given."""
    if out.exists():
        return out
    picked = shuffled_texts(files)[:n + CALIBRATION]
    if len(picked) < n + CALIBRATION:
        raise SystemExit(f"--mentions hold {len(picked)} distinct texts; {n + CALIBRATION} are needed")
    vectors = embed(base_index, picked)
    np.save(out.with_name(CALIBRATION_FILE), vectors[n:])
    np.save(out, vectors[:n])
    return out


def calibration_queries(base_index: Path, files: list[Path], query_files: list[Path], work: Path, n: int) -> Path:
    """The embeddings of *n* shuffled mention texts of *files* that are not among the queries' texts, written
    once per (files, n): what each build calibrates on instead of the default 500."""
    import hashlib

    key = hashlib.sha256(json.dumps([sorted(str(f) for f in files), n]).encode()).hexdigest()[:12]
    out = work / f"calibration-{key}.npy"
    if out.exists():
        return out
    queries = set(shuffled_texts(query_files)[:QUERIES])
    picked = [text for text in shuffled_texts(files) if text not in queries][:n]
    if len(picked) < n:
        raise SystemExit(f"--calibration-mentions hold {len(picked)} texts other than the queries'; {n} are needed")
    np.save(out, embed(base_index, picked))
    return out


def evict(folder: Path) -> None:
    """Drop the pages of every file under *folder* from the page cache (written back first): the next read of
    them comes from disk."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def child(kind: str, args: argparse.Namespace, source: Path, out: Path, preset: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, "--base-index", str(args.base_index), "--source", str(source),
               "--out", str(out), "--preset", preset, "--queries", str(args.queries),
               "--calibration-file", str(args.calibration_file)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def commit() -> str:
    """The checkout's commit, with ``+`` when its tracked files differ from it: which code a row measured."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode != 0
    return head + ("+" if dirty else "") if head else "unknown"


def disk_mib(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 1)


def table(record: dict[str, Any]) -> str:
    lines = [f"Scale benchmark, {record['machine']}; vectors from {record['base_index']}. Peak RSS counts the pages "
             "of mapped files the process touched; anon is its own memory (heap) alone. Two figures a cell: the "
             "index's files evicted from the page cache / cached (rows that measured both).", "",
             "| names | kind | code | build s | build peak RSS / anon MiB | disk MiB | cold load s | "
             "load+search peak RSS / anon MiB | p50 ms | p99 ms | batch q/s | build recall@1 / @10 | "
             "mention recall@1 / @10 |",
             "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    def both(r: dict[str, Any], key: str) -> str:  # from disk / cached, where the row measured both
        return f"{r[key]} / {r['cached'][key]}" if "cached" in r else str(r[key])

    for r in record["runs"]:
        lines.append(f"| {r['names']} | {r['preset']} | {r.get('commit', '–')} | {r['build_s']} | {r['build_peak_rss_mib']} / "
                     f"{r.get('build_peak_anon_mib', '–')} | {r['disk_mib']} | {both(r, 'cold_load_s')} | "
                     f"{r['search_peak_rss_mib']} / {r.get('search_peak_anon_mib', '–')} | {both(r, 'p50_ms')} | "
                     f"{both(r, 'p99_ms')} | {both(r, 'batch_queries_per_s')} | "
                     f"{r.get('recall@1', 1.0)} / {r.get('recall@10', 1.0)} | "
                     f"{r.get('mention_recall@1', 1.0)} / {r.get('mention_recall@10', 1.0)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-index", type=Path, required=True)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--work", type=Path, default=ROOT / "bench-work" / "scale")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the built indexes")
    parser.add_argument("--append", action="store_true", help="add this run's rows to the record in --json")
    parser.add_argument("--mentions", type=Path, nargs="+",
                        help="docs + mentions JSONL whose mention texts, embedded by the base index, are the queries")
    parser.add_argument("--calibration-mentions", type=Path, nargs="+",
                        help="docs + mentions JSONL whose mention texts (other than the queries') each build "
                             "calibrates on (default: 500 more texts of --mentions)")
    parser.add_argument("--calibration", type=int, default=CALIBRATION,
                        help="how many texts of --calibration-mentions")
    parser.add_argument("--child", choices=["build", "search", "truth"], help=argparse.SUPPRESS)
    parser.add_argument("--calibration-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--queries", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        logging.basicConfig(level=logging.WARNING)
        {"build": child_build, "search": child_search, "truth": child_truth}[args.child](args)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not args.mentions:
        parser.error("--mentions FILE… is required: its mention texts are the queries")
    args.work.mkdir(parents=True, exist_ok=True)
    args.queries = mention_queries(args.base_index, args.mentions, args.work / "queries.npy", QUERIES)
    args.calibration_file = calibration_queries(args.base_index, args.calibration_mentions, args.mentions, args.work,
                                                args.calibration) if args.calibration_mentions else (
        args.work / CALIBRATION_FILE)
    calibration_queries_n = int(len(np.load(args.calibration_file, mmap_mode="r")))
    record: dict[str, Any] = {"command": " ".join(["scripts/bench_scale.py", *sys.argv[1:]]),
                              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                              "base_index": str(args.base_index), "runs": []}
    if args.append and args.json and args.json.exists():  # the rows of earlier runs stay, with their commands
        earlier = json.loads(args.json.read_text())
        record["runs"] = earlier["runs"]
        record["command"] = "; ".join([earlier["command"], record["command"]])
        record.update({k: v for k, v in earlier.items() if k not in record})  # notes written beside the rows
    for size in (int(s) for s in args.sizes.split(",")):
        source = ontology(size, args.work)
        for preset in args.presets.split(","):
            out = args.work / f"{size}-{preset}"
            row: dict[str, Any] = {"names": size, "preset": preset, "commit": commit(),
                                   "calibration_queries": calibration_queries_n,
                                   **child("build", args, source, out, preset)}
            row["disk_mib"] = disk_mib(out)
            evict(out)  # a start from disk, whatever the build left in the page cache
            row.update(child("search", args, source, out, preset), page_cache="evicted")
            row["cached"] = child("search", args, source, out, preset)  # the pages the first search read, cached
            faiss_meta = json.loads((out / "meta.json").read_text())["faiss"]
            if faiss_meta["preset"] != "flat":  # flat: the exact search itself
                row.update(child("truth", args, source, out, preset))
            row["factory"] = faiss_meta["factory"]
            row["search_params"], row["shortlist"] = faiss_meta["search_params"], faiss_meta.get("rescore")
            row["tuned"] = (faiss_meta.get("recall") or {}).get("tuned")
            row.update({key: value for key, value in (faiss_meta.get("recall") or {}).items() if key.startswith("recall")})
            record["runs"].append(row)
            log.info("%s", row)
            if args.json:  # written after every run: a long run's figures survive an interruption
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(record, indent=2) + "\n")
            if not args.keep:
                shutil.rmtree(out)
    print(table(record))


if __name__ == "__main__":
    main()
