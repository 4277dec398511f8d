#!/usr/bin/env python
"""The dictionary matcher from 100k to 10M names: first build, cached load, memory and matching speed; one table
plus JSON.

Names: the distinct names of a built index (e.g. MEDIC's 77,817), then, to reach each size, copies of them
with one to three words appended, drawn (seeded) from the words of those names ("Anemia, Hemolytic" ->
"Anemia, Hemolytic retinal type"): new keys that share the real names' prefixes, as UMLS's many
variants of one name do. Every row runs in fresh child processes, so resident memory is the row's own:

- ``build``: ``DictionaryMatcher.cached`` on an empty cache folder, keyed as an index's matcher is (by a
  name for the list's content, not by the names: ``DictionaryMatcher.for_index``), so reading the names
  from their file, normalising and stemming every one and writing the tries: seconds and peak RSS;
- ``load``: the same call again in a new process (the cache read, no name read: a dict and a set up to
  ``matcher_cache.IN_MEMORY_KEYS`` keys, memory-mapped tries above), then ``find`` over the documents given:
  seconds to load, peak RSS, documents/s and the matches found (a larger dictionary may find a few longer
  names in the same texts);
- at the base size, the same load with the tables forced into mapped tries (``--compare-tries``): what a
  trie lookup costs against a dict's.

    python scripts/bench_matcher.py --index /work/idx/medic-onnx --docs ../shared/data/bc5cdr/dev.docs.jsonl \\
        --sizes 1000000,10000000 --work /work/bench-work/matcher --json docs/results/matcher.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def names_file(index: Path, size: int, work: Path) -> Path:
    """*size* names: the index's own, then seeded variants of them (see the module docstring)."""
    out = work / f"names-{size}.txt"
    if out.exists():
        return out
    from linker.termdb import TermDB

    base = TermDB(index / "terms.sqlite").term_texts()
    words = sorted({w for name in base for w in name.replace(",", " ").split() if w.isalpha() and len(w) > 3})
    rng = random.Random(13)
    seen = set(base)
    names = list(base)
    while len(names) < size:
        name = f"{rng.choice(base)} {' '.join(rng.choices(words, k=rng.randint(1, 3)))}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    staging = out.with_suffix(".tmp")
    staging.write_text("".join(f"{name}\n" for name in names[:size]), encoding="utf-8")
    os.replace(staging, out)
    return out


def child(args: argparse.Namespace) -> None:
    from linker.mentions import matcher_cache
    from linker.mentions.dictionary import DictionaryMatcher

    if args.in_memory is not None:
        matcher_cache.IN_MEMORY_KEYS = args.in_memory
    started = time.perf_counter()
    matcher = DictionaryMatcher.cached(lambda: args.names.read_text(encoding="utf-8").splitlines(),
                                       key=f"{args.names.name} {args.names.stat().st_size}", cache_dir=args.cache)
    loaded = time.perf_counter() - started
    result: dict[str, Any] = {"seconds": round(loaded, 2), "keys": len(matcher.keys),
                              "tries": isinstance(matcher.keys, matcher_cache.TrieKeys)}
    if args.docs:
        texts = [json.loads(line)["text"] for path in args.docs for line in path.read_text().splitlines() if line]
        started = time.perf_counter()
        found = sum(len(matcher.find(text)) for text in texts)
        result.update(docs_per_s=round(len(texts) / (time.perf_counter() - started), 1), matches=found)
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


def run_child(names: Path, cache: Path, docs: list[Path], in_memory: int | None = None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", "--names", str(names), "--cache", str(cache)]
    command += ["--docs", *map(str, docs)] if docs else []
    command += ["--in-memory", str(in_memory)] if in_memory is not None else []
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, help="index folder whose names are the base")
    parser.add_argument("--docs", type=Path, nargs="*", default=[], help="docs JSONL whose texts are matched")
    parser.add_argument("--sizes", default="1000000,10000000", help="names per row, beside the base")
    parser.add_argument("--work", type=Path, default=ROOT / "bench-work" / "matcher")
    parser.add_argument("--compare-tries", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--names", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--in-memory", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.index is None:
        parser.error("--index is required")
    args.work.mkdir(parents=True, exist_ok=True)
    from linker.termdb import TermDB

    base = len(TermDB(args.index / "terms.sqlite").term_texts())
    rows = []
    for size in [base, *(int(s) for s in args.sizes.split(",") if s)]:
        names = names_file(args.index, size, args.work)
        cache = args.work / f"cache-{size}"
        shutil.rmtree(cache, ignore_errors=True)
        build = run_child(names, cache, [])
        load = run_child(names, cache, args.docs)
        row = {"names": size, "keys": build["keys"], "build_s": build["seconds"],
               "build_peak_rss_mib": build["peak_rss_mib"], "cache_mib": round(
                   sum(p.stat().st_size for p in cache.iterdir()) / 2**20, 1),
               "load_s": load["seconds"], "load_find_peak_rss_mib": load["peak_rss_mib"], "tries": load["tries"],
               "docs_per_s": load.get("docs_per_s"), "matches": load.get("matches")}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if size == base and args.compare_tries:
            tries = run_child(names, cache, args.docs, in_memory=0)
            rows.append({**row, "names": f"{size} (tries forced)", "load_s": tries["seconds"],
                         "load_find_peak_rss_mib": tries["peak_rss_mib"], "tries": tries["tries"],
                         "docs_per_s": tries.get("docs_per_s"), "matches": tries.get("matches")})
            print(json.dumps(rows[-1]), flush=True)
    header = ("| names | keys | first build s | build peak RSS MiB | cache MiB | cached load s | load + find peak RSS MiB "
              "| tables | find docs/s | matches |")
    lines = [f"Dictionary matcher, {platform.machine()}, {os.cpu_count()} cores; base names of {args.index}; "
             f"documents: {', '.join(map(str, args.docs)) or 'none'}", "", header, "|" + " --- |" * 10]
    for r in rows:
        lines.append(f"| {r['names']} | {r['keys']:,} | {r['build_s']} | {r['build_peak_rss_mib']} | {r['cache_mib']} | "
                     f"{r['load_s']} | {r['load_find_peak_rss_mib']} | {'mapped tries' if r['tries'] else 'dict + set'} | "
                     f"{r['docs_per_s']} | {r['matches']} |")
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "matcher", "command": " ".join(["scripts/bench_matcher.py",
                                                                                         *sys.argv[1:]]),
                                         "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                         "rows": rows, "table": "\n".join(lines)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
