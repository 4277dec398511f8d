#!/usr/bin/env python
"""Write docs/results.md from the JSON records of bench_accuracy.py, bench_speed.py (and bench_spark.py).

    python scripts/make_results.py docs/results/accuracy.json docs/results/speed.json -o docs/results.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DATASETS = {
    "ncbi-dev": "NCBI-disease dev (787 mentions) → CTD MEDIC (all names, + MEDIC alt ids)",
    "bc5cdr-dis-dev": "BC5CDR dev, Disease mentions (4244) → CTD MEDIC (all names, + MEDIC alt ids)",
    "hpo-syn": "HPO: every EXACT synonym as a query → index of HPO preferred names only",
}


def accuracy_section(record: dict[str, Any]) -> list[str]:
    lines = ["## Normalisation accuracy (gold mentions)", "",
             f"Command: `{record['command']}`  ", f"Run: {record['date']}", ""]
    for name, text in DATASETS.items():
        if any(r["dataset"] == name for r in record["records"]):
            lines.append(f"- **{name}**: {text}")
    lines += ["", "| dataset | system | model | scored | absent | acc@1 | acc@5 | MRR | acc@1 (absent = miss) | mentions/s |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in record["records"]:
        c, m = r["counts"], r["metrics"]
        lines.append(f"| {r['dataset']} | {r['system']} | {r['model']} | {c['scored']} | {c['absent']} | "
                     f"{m['acc@1']:.4f} | {m['acc@5']:.4f} | {m['mrr']:.4f} | {m['acc@1_all']:.4f} | "
                     f"{r['mentions_per_second']} |")
    lines += ["", "Conventions (from `linker.evaluate`):", ""]
    lines += [f"- {key}: {value}" for key, value in record["conventions"].items()]
    composite = [(r["dataset"], r["system"], r["composite"]) for r in record["records"] if r["composite"]["n"]]
    if composite:
        lines += ["", "Composite / multi-id mentions (included above; any gold id counts):", "",
                  "| dataset | system | n | acc@1 |", "|---|---|---:|---:|"]
        lines += [f"| {d} | {s} | {c['n']} | {c['acc@1']:.4f} |" for d, s, c in composite]
    return lines


def speed_section(record: dict[str, Any]) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_speed import format_table  # re-rendered from the stored results, not the stored text

    return ["## Speed and memory (side by side, one run)", "", f"Command: `{record['command']}`  ",
            f"Run: {record['date']}", "", format_table(record["results"])]


def spark_section(record: dict[str, Any]) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_spark import table  # re-rendered from the stored results

    return ["## Spark engine (one run)", "", f"Command: `{record['command']}`  ", f"Run: {record['date']}", "",
            table(record)]


def scale_section(record: dict[str, Any]) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_scale import table  # re-rendered from the stored results

    return ["## Index scale (runs appended; each row names its code)", "", f"Commands: `{record['command']}`  ", f"Run: {record['date']}", "",
            table(record)]


def umls_section(record: dict[str, Any]) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_umls import table  # re-rendered from the stored results

    return ["## UMLS reader at full size (one run)", "", f"Command: `{record['command']}`  ", f"Run: {record['date']}",
            "", table(record)]


def load_section(records: list[dict[str, Any]]) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_load import table  # re-rendered from the stored results

    return ["## Cold load of the default and MEDIC indexes, before and after format 2", "",
            *[f"Command: `{r['command']}` (code: `{r['code']}`)  " for r in records], f"Run: {records[-1]['date']}", "",
            table(records)]


def end_to_end_section(record: dict[str, Any], command: str) -> list[str]:
    e2e = record["end_to_end"]
    lines = ["## End to end (spaCy pipeline finds and links the mentions)", "", f"Command: `{command}`", "",
             f"{e2e['documents']} documents, {e2e['gold']} gold mentions with ids, {e2e['predicted']} linked "
             f"predictions, {e2e['seconds']} s; pipeline: default `concept_linker` settings over "
             f"`{record['index']['path']}`. Predictions carry no entity type, so per-type rows give recall only.", "",
             "| match | type | P | R | F1 |", "|---|---|---:|---:|---:|"]
    for mode in ("strict", "overlap"):
        for name, prf in e2e[mode].items():
            cells = [f"{prf[key]:.4f}" if prf[key] is not None else "–" for key in ("precision", "recall", "f1")]
            lines.append(f"| {mode} | {name} | {' | '.join(cells)} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("accuracy", type=Path)
    parser.add_argument("speed", type=Path)
    parser.add_argument("-o", "--out", type=Path, default=Path("docs/results.md"))
    parser.add_argument("--end-to-end", type=Path, help="a 'linker evaluate --docs … --json' record")
    parser.add_argument("--end-to-end-command", default="", help="the command that wrote --end-to-end")
    parser.add_argument("--spark", type=Path, help="a bench_spark.py record (its section follows speed)")
    parser.add_argument("--scale", type=Path, help="a bench_scale.py record")
    parser.add_argument("--umls", type=Path, help="a bench_umls.py record")
    parser.add_argument("--load", type=Path, help="bench_load.py records (before / after)")
    parser.add_argument("--notes", type=Path, help="a Markdown file appended as the Notes section")
    parser.add_argument("--machine", default="", help="a sentence describing the machine (added to the header)")
    args = parser.parse_args()
    accuracy = json.loads(args.accuracy.read_text())
    speed = json.loads(args.speed.read_text())
    machine = speed["machine"]
    lines = ["# Results", "",
             "Generated by `scripts/make_results.py` from the JSON records in `docs/results/`; "
             "see [reproduce.md](reproduce.md) for how to rerun each number.", "",
             f"Machine: {machine['platform']}, Python {machine['python']}, {machine['cpus']} CPU cores, no GPU. "
             + args.machine, ""]
    lines += accuracy_section(accuracy) + [""]
    if args.end_to_end:
        lines += end_to_end_section(json.loads(args.end_to_end.read_text()), args.end_to_end_command) + [""]
    lines += speed_section(speed) + [""]
    if args.spark:
        lines += spark_section(json.loads(args.spark.read_text())) + [""]
    if args.scale:
        lines += scale_section(json.loads(args.scale.read_text())) + [""]
    if args.umls:
        lines += umls_section(json.loads(args.umls.read_text())) + [""]
    if args.load:
        lines += load_section(json.loads(args.load.read_text())) + [""]
    if args.notes:
        lines += ["## Notes", "", args.notes.read_text().strip(), ""]
    args.out.write_text("\n".join(lines))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
