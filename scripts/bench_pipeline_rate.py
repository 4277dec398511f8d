#!/usr/bin/env python
"""Documents a second of a trained pipeline against the default pipeline, fresh ``linker annotate`` commands.

Issue 16 asks for a trained pipeline at least half as fast as the default. Each setting annotates each corpus
in a fresh ``linker annotate -p N`` command (the wall includes start-up, as a user's run does), the settings
interleaved in ``--rounds`` rounds, the best wall kept (``bench_speed.time_annotate``); one table plus JSON:

- the default as it was when the issue was filed: ``--filed-index`` (an index built with ``--backend torch``),
  every mention embedded (``--set skip_exact=false``), spaCy importing torch (``LINKER_THINC_TORCH=1``);
- the default now: ``--index`` (``linker build``'s output today);
- each ``--pipeline``.

    D=../shared/data
    python scripts/bench_pipeline_rate.py $D/ncbi_disease/dev.docs.jsonl $D/bc5cdr/dev.docs.jsonl \\
        --filed-index /work/bench-work/speed-hnsw/medic-onnx--torch-float32 --index /work/idx/medic-hnsw \\
        --pipeline runs/medic-pipeline --json docs/results/pipeline_rate.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

# the fresh-command timing of bench_speed's annotate stage (scripts/ is this script's first sys.path entry)
from bench_speed import time_annotate


def settings(args: argparse.Namespace) -> dict[str, tuple[list[str], dict[str, str]]]:
    out = {"default when issue 16 was filed (torch index, every mention embedded, spaCy importing torch)":
           (["--index", args.filed_index, "--set", "skip_exact=false"], {"LINKER_THINC_TORCH": "1"}),
           "default now": (["--index", args.index], {})}
    for pipeline in args.pipeline:
        out[f"trained pipeline {pipeline}"] = (["--pipeline", pipeline], {})
    return out


def table(rows: list[dict[str, Any]]) -> str:
    rate = {(r["settings"], r["corpus"]): r["docs_per_s"] for r in rows}
    filed, now = list(dict.fromkeys(r["settings"] for r in rows))[:2]
    lines = ["| settings | corpus | docs | docs/s | × default when filed | × default now |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        key = (r["settings"], r["corpus"])
        lines.append(f"| {r['settings']} | {r['corpus']} | {r['docs']} | "
                     f"{r['docs_per_s']} | {rate[key] / rate[filed, r['corpus']]:.2f} | "
                     f"{rate[key] / rate[now, r['corpus']]:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpora", nargs="+", help="documents to annotate (any linker annotate input)")
    parser.add_argument("--filed-index", required=True, help="the default's index as built when the issue was filed "
                                                             "(linker build … --backend torch)")
    parser.add_argument("--index", required=True, help="the default's index as linker build makes it now")
    parser.add_argument("--pipeline", action="append", default=[], help="a trained pipeline folder (repeatable)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best wall is kept")
    parser.add_argument("-p", "--processes", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows = time_annotate([Path(c) for c in args.corpora], settings(args), (args.processes,), args.rounds)
    text = table(rows)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "bench_pipeline_rate", "command": " ".join(sys.argv),
                                         "date": time.strftime("%Y-%m-%d"), "machine": {
                                             "platform": platform.platform(), "python": platform.python_version(),
                                             "cpus": os.cpu_count()},
                                         "table": text, "rows": rows}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
