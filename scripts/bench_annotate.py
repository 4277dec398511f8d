"""Throughput of bulk annotation and of the HTTP lookup service, with peak memory.

    python scripts/bench_annotate.py /work/shared/data/ncbi_disease/dev.docs.jsonl \\
        /work/shared/data/bc5cdr/dev.docs.jsonl --index indexes/hpo-minilm --out bench-results/annotate.json

* annotate: ``linker annotate`` over each corpus with 1 and 2 processes, each run a fresh command (so the
  wall time includes starting the workers and loading the model); ``docs/s steady`` subtracts the wall
  time of a one-document run with the same number of processes.
* lookup: ``linker serve`` on a free loopback port, then a bounded number of GET /lookup (one term) and
  POST /lookup (16 terms) requests from client threads at several concurrencies; terms are the gold
  mention texts of the corpora (``*.mentions.jsonl`` beside ``*.docs.jsonl``) or, without them, words.
* memory: the peak of the summed resident memory of the command and all its child processes, sampled
  every 50 ms from /proc (Linux).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


# -- process-tree memory -----------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(p) for p in task.read_text().split()]
        except OSError:
            pass
    return out


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakMemory:
    """Samples the summed RSS of *pid* and its descendants in a thread; ``peak_mib`` when stopped."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids, todo = [], [self.pid]
            while todo:
                pid = todo.pop()
                pids.append(pid)
                todo += _children(pid)
            self.peak = max(self.peak, sum(_rss_kib(p) for p in pids))
            self._stop.wait(self.every)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.peak / 1024, 1)


# -- annotate ----------------------------------------------------------------------------------------------------
def _linker(*args: str) -> list[str]:
    return [sys.executable, "-m", "linker", "-q", *args]


def run_annotate(corpus: Path, processes: int, index: str | None, workdir: Path, limit: int | None) -> dict[str, Any]:
    out = workdir / f"{corpus.parent.name}-{corpus.stem}-p{processes}-{limit or 'all'}.jsonl"
    for stale in workdir.glob(out.name + "*"):
        stale.unlink()
    source = corpus
    if limit is not None:
        source = workdir / f"{corpus.parent.name}-first{limit}.jsonl"
        with corpus.open() as fh, source.open("w") as dst:
            for _, line in zip(range(limit), fh):
                dst.write(line)
    args = ["annotate", str(source), "-o", str(out), "-p", str(processes)] + (["--index", index] if index else [])
    start = time.perf_counter()
    proc = subprocess.Popen(_linker(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    memory = PeakMemory(proc.pid)
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    peak = memory.stop()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"linker annotate failed ({proc.returncode}):\n{err}")
    docs = sum(1 for _ in out.open())
    mentions = sum(len(json.loads(line)["mentions"]) for line in out.open())
    return {"corpus": f"{corpus.parent.name}/{corpus.name}", "processes": processes, "docs": docs,
            "mentions": mentions, "wall_s": round(wall, 2), "docs_per_s": round(docs / wall, 2), "peak_mib": peak}


# -- lookup service ----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _terms(corpora: list[Path], n: int, seed: int = 13) -> list[str]:
    terms: list[str] = []
    for corpus in corpora:
        mentions = corpus.with_name(corpus.name.replace(".docs.", ".mentions."))
        if mentions.exists():
            terms += [json.loads(line)["text"] for line in mentions.open()]
    if not terms:
        for corpus in corpora:
            for line in corpus.open():
                terms += json.loads(line).get("text", "").split()[:20]
    rng = random.Random(seed)
    return [rng.choice(terms) for _ in range(n)]


def _load(url: str, requests: list[tuple[str, Any]], concurrency: int) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    shares = [requests[i::concurrency] for i in range(concurrency)]

    def client(share: list[tuple[str, Any]]) -> None:
        nonlocal errors
        with httpx.Client(base_url=url, timeout=120) as c:
            for method, payload in share:
                t0 = time.perf_counter()
                r = c.get("/lookup", params=payload) if method == "GET" else c.post("/lookup", json=payload)
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    errors += r.status_code != 200

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, shares))
    wall = time.perf_counter() - start
    latencies.sort()
    texts = sum(1 if m == "GET" else len(p["texts"]) for m, p in requests)
    return {"concurrency": concurrency, "requests": len(requests), "errors": errors, "wall_s": round(wall, 2),
            "requests_per_s": round(len(requests) / wall, 1), "texts_per_s": round(texts / wall, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1)}


def run_service(corpora: list[Path], index: str | None, n_requests: int) -> dict[str, Any]:
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["serve", "--port", str(port), "--max-batch", "64"] + (["--index", index] if index else [])
    start = time.perf_counter()
    proc = subprocess.Popen(_linker(*args), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    memory = PeakMemory(proc.pid)
    try:
        while True:
            try:
                httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None:
                    raise SystemExit(f"linker serve failed:\n{proc.stderr.read() if proc.stderr else ''}") from None
                time.sleep(0.2)
        startup = time.perf_counter() - start
        terms = _terms(corpora, n_requests * 17)
        _load(url, [("GET", {"q": t, "k": 5}) for t in terms[:20]], 2)  # warm up
        runs = []
        for concurrency in (1, 8, 32):
            single = [("GET", {"q": t, "k": 5}) for t in terms[:n_requests]]
            runs.append({"kind": "GET /lookup (1 term)", **_load(url, single, concurrency)})
        batches = [("POST", {"texts": terms[i:i + 16], "k": 5}) for i in range(0, 16 * (n_requests // 4), 16)]
        runs.append({"kind": "POST /lookup (16 terms)", **_load(url, batches, 4)})
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"startup_s": round(startup, 2), "peak_mib": memory.stop(), "runs": runs}


# -- report ------------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpora", nargs="+", type=Path, help="*.docs.jsonl files ({doc_id, text} per line)")
    parser.add_argument("--index", help="index folder (default: the default HPO index)")
    parser.add_argument("--processes", default="1,2", help="process counts to compare")
    parser.add_argument("--limit", type=int, help="annotate only the first N documents of each corpus")
    parser.add_argument("--requests", type=int, default=300, help="requests per lookup load level")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "annotate.json")
    parser.add_argument("--skip-annotate", action="store_true")
    parser.add_argument("--skip-service", action="store_true")
    args = parser.parse_args()

    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                          "python": platform.python_version()},
                              "index": args.index or "default (hpo-minilm)", "annotate": [], "startup": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_annotate:
            for processes in (int(p) for p in args.processes.split(",")):
                one = run_annotate(args.corpora[0], processes, args.index, work, limit=1)
                result["startup"].append({"processes": processes, "one_doc_wall_s": one["wall_s"],
                                          "peak_mib": one["peak_mib"]})
                for corpus in args.corpora:
                    row = run_annotate(corpus, processes, args.index, work, args.limit)
                    steady = row["wall_s"] - one["wall_s"]
                    row["docs_per_s_steady"] = round((row["docs"] - 1) / steady, 2) if steady > 0 else None
                    result["annotate"].append(row)
                    print(f"  annotate {row['corpus']} p={processes}: {row['docs_per_s']} docs/s", file=sys.stderr)
        if not args.skip_service:
            result["service"] = run_service(args.corpora, args.index, args.requests)

    print("\nannotate (fresh `linker annotate` command per row; wall includes worker start-up)")
    print(f"{'corpus':34} {'proc':>4} {'docs':>5} {'mentions':>8} {'wall s':>7} {'docs/s':>7} {'steady':>7} {'peak MiB':>9}")
    for r in result["annotate"]:
        print(f"{r['corpus']:34} {r['processes']:>4} {r['docs']:>5} {r['mentions']:>8} {r['wall_s']:>7} "
              f"{r['docs_per_s']:>7} {r['docs_per_s_steady'] or '-':>7} {r['peak_mib']:>9}")
    for s in result["startup"]:
        print(f"  start-up with {s['processes']} process(es): one-document run {s['one_doc_wall_s']} s, "
              f"peak {s['peak_mib']} MiB")
    if "service" in result:
        svc = result["service"]
        print(f"\nlookup service (`linker serve`, loopback; start-up {svc['startup_s']} s, peak {svc['peak_mib']} MiB)")
        print(f"{'request':26} {'conc':>4} {'reqs':>5} {'req/s':>7} {'texts/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
        for r in svc["runs"]:
            print(f"{r['kind']:26} {r['concurrency']:>4} {r['requests']:>5} {r['requests_per_s']:>7} "
                  f"{r['texts_per_s']:>8} {r['p50_ms']:>7} {r['p99_ms']:>7} {r['errors']:>6}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
