#!/usr/bin/env python
"""Cold load of built indexes: time and resident memory of a fresh process that loads each index and answers
one search; one table plus JSON.

Each index is loaded in its own child process (so page cache aside, nothing is warm): ``ConceptIndex.load``,
the FAISS index, the per-term concept table, then one ``search_vectors`` query with a vector of the index
itself (no encoder is loaded: this measures the index, not the model). Reported: seconds to the first answer,
the process's resident memory after it (``VmRSS``), its peak (``VmHWM``), the size of the folder on disk, and
the RSS of the same interpreter with only numpy and faiss imported, so the index's own share can be read off.

``--code DIR`` runs the children with another checkout's ``linker`` package on ``sys.path`` (e.g. a
``git worktree`` of an earlier commit, with an index built by that commit): before / after in one run.

    python scripts/bench_load.py --index indexes/hpo-minilm --index /work/idx/medic-onnx --json load.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def child(folder: Path) -> None:
    started = time.perf_counter()
    import faiss  # noqa: F401 - imported before the baseline is read
    import numpy as np

    from linker.index import ConceptIndex

    baseline = status("VmRSS")
    loading = time.perf_counter()
    index = ConceptIndex.load(folder)
    query = index.faiss.reconstruct(0).reshape(1, -1).astype(np.float32)
    index._concept_table()
    found = index.search_vectors(query, ["query"], 5)
    seconds = time.perf_counter() - loading
    print(json.dumps({"load_and_first_search_s": round(seconds, 3), "imports_s": round(loading - started, 2),
                      "rss_mib": round(status("VmRSS"), 1), "peak_rss_mib": round(status("VmHWM"), 1),
                      "imports_rss_mib": round(baseline, 1), "first": found[0][0].concept_id,
                      "vectors": int(index.faiss.ntotal)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, action="append", default=[])
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose linker package loads the indexes")
    parser.add_argument("--label", default="", help="a name for this run (e.g. before / after)")
    parser.add_argument("--repeat", type=int, default=3, help="loads per index; the median is kept")
    parser.add_argument("--json", type=Path, help="append this run's record to this JSON list")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if not args.index:
        parser.error("give at least one --index DIR")
    env = {**os.environ, "PYTHONPATH": str(args.code.resolve())}
    rows: list[dict[str, Any]] = []
    for folder in args.index:
        runs = []
        for _ in range(args.repeat):
            done = subprocess.run([sys.executable, __file__, "--child", str(folder.resolve())], env=env, check=True,
                                  capture_output=True, text=True, cwd=args.code)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        runs.sort(key=lambda r: r["load_and_first_search_s"])
        row = {"index": str(folder), "label": args.label, **runs[len(runs) // 2],
               "disk_mib": round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 1)}
        rows.append(row)
    record = {"command": " ".join(["scripts/bench_load.py", *sys.argv[1:]]),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "code": str(args.code), "rows": rows}
    if args.json:
        previous = json.loads(args.json.read_text()) if args.json.exists() else []
        args.json.write_text(json.dumps([*previous, record], indent=2) + "\n")
    print(table([record]))


def table(records: list[dict[str, Any]]) -> str:
    lines = ["| run | index | vectors | disk MiB | load + first search s | RSS MiB | peak RSS MiB | "
             "RSS of the imports alone MiB |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for record in records:
        for r in record["rows"]:
            lines.append(f"| {r['label']} | {r['index']} | {r['vectors']:,} | {r['disk_mib']} | "
                         f"{r['load_and_first_search_s']} | {r['rss_mib']} | {r['peak_rss_mib']} | "
                         f"{r['imports_rss_mib']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
