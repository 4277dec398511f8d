#!/usr/bin/env python
"""UMLS reader at full size: a synthetic MRCONSO/MRDEF/MRSTY streamed into a term dictionary; one table plus JSON.

The synthetic release has the shape of a real one: ``--rows`` MRCONSO rows in CUI order, four rows per CUI
(three English names, one of them the preferred ``TS=P, STT=PF, ISPREF=Y`` row, and one Spanish row that the
default language filter drops), one row in 50 marked suppressible (``SUPPRESS=O``, dropped too), names of
three to seven words from a 5,000-word vocabulary; MRDEF holds one definition for one CUI in four; MRSTY one
semantic type per CUI. The files are written once into ``--work`` and reused.

The dictionary is then built in a child process exactly as ``linker build`` builds it
(:func:`linker.sources.umls.read_umls` into :class:`linker.termdb.TermDBWriter`, then ``finish``), and the
child reports the time of the streamed read, the time of ``finish`` (merging, numbering, indexing, FTS,
VACUUM), and its resident memory: sampled every million records during the read, and the peak over the run.

    python scripts/bench_umls.py --rows 15000000 --work bench-work/umls --json docs/results/umls.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
log = logging.getLogger("bench_umls")
ROWS_PER_CUI = 4
VOCABULARY = 5_000


def write_release(folder: Path, rows: int) -> dict[str, Any]:
    """Write MRCONSO/MRDEF/MRSTY.RRF into *folder* unless a complete set for *rows* is there already."""
    from tqdm import tqdm

    stamp = folder / "_complete.json"
    if stamp.exists() and json.loads(stamp.read_text())["rows"] == rows:
        return json.loads(stamp.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    words = [f"w{i:04d}" for i in range(VOCABULARY)]
    cuis = rows // ROWS_PER_CUI
    started = time.perf_counter()
    with (folder / "MRCONSO.RRF").open("w") as conso, (folder / "MRDEF.RRF").open("w") as mrdef, \
            (folder / "MRSTY.RRF").open("w") as mrsty, tqdm(total=cuis * ROWS_PER_CUI, unit="rows", desc="writing") as bar:
        for block in range(0, cuis, 100_000):
            n = min(100_000, cuis - block)
            lengths = rng.integers(3, 8, size=(n, ROWS_PER_CUI))
            picks = rng.integers(0, VOCABULARY, size=(n, ROWS_PER_CUI, 7))
            suppressed = rng.random((n, ROWS_PER_CUI)) < 0.02
            lines: list[str] = []
            for j in range(n):
                cui = f"C{block + j:07d}"
                for r in range(ROWS_PER_CUI):
                    text = " ".join(words[w] for w in picks[j, r, :lengths[j, r]])
                    lat, pref = ("SPA", "N") if r == ROWS_PER_CUI - 1 else ("ENG", "Y" if r == 0 else "N")
                    ts, stt = ("P", "PF") if r == 0 else ("S", "VO")
                    sup = "O" if suppressed[j, r] and r else "N"
                    lines.append(f"{cui}|{lat}|{ts}|L{block + j:07d}|{stt}|S{r}|{pref}|A{(block + j) * 4 + r:08d}||"
                                 f"|D{block + j:06d}|SYN|{'PT' if r == 0 else 'SY'}|D{block + j:06d}|{text}|0|{sup}||\n")
                if (block + j) % 4 == 0:
                    mrdef.write(f"{cui}|A{(block + j) * 4:08d}|AT{block + j:08d}||SYN|a definition of {cui}|N||\n")
                mrsty.write(f"{cui}|T047|B2.2.1.2.1|Disease or Syndrome|AT{block + j:08d}|256|\n")
            conso.write("".join(lines))
            bar.update(n * ROWS_PER_CUI)
    info = {"rows": rows, "cuis": cuis, "seconds": round(time.perf_counter() - started, 1),
            "mrconso_mib": round((folder / "MRCONSO.RRF").stat().st_size / 2**20, 1)}
    stamp.write_text(json.dumps(info))
    return info


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(folder: Path, out: Path) -> None:
    from linker.sources.umls import read_umls
    from linker.termdb import TermDBWriter

    samples: list[tuple[int, float]] = []

    def sampled(records: Any) -> Any:
        for n, record in enumerate(records, 1):
            if n % 1_000_000 == 0:
                samples.append((n, round(rss_mib(), 1)))
            yield record

    out.unlink(missing_ok=True)
    started = time.perf_counter()
    writer = TermDBWriter(out)
    writer.add(sampled(read_umls(folder / "MRCONSO.RRF")))
    read_s = time.perf_counter() - started
    counts = writer.finish()
    print(json.dumps({"read_s": round(read_s, 1), "finish_s": round(time.perf_counter() - started - read_s, 1),
                      "total_s": round(time.perf_counter() - started, 1), **counts,
                      "rss_during_read_mib": samples,
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "terms_sqlite_mib": round(out.stat().st_size / 2**20, 1)}))


def table(record: dict[str, Any]) -> str:
    release, result = record["release"], record["result"]
    samples = result["rss_during_read_mib"]
    return "\n".join([
        f"UMLS reader on a synthetic release, {record['machine']}", "",
        "| MRCONSO rows | MiB | concepts | terms kept | read s | finish s | total s | "
        "RSS at 1st / last million records MiB | peak RSS MiB | terms.sqlite MiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {release['rows']:,} | {release['mrconso_mib']} | {result['concepts']:,} | {result['terms']:,} | "
        f"{result['read_s']} | {result['finish_s']} | {result['total_s']} | "
        f"{samples[0][1] if samples else '-'} / {samples[-1][1] if samples else '-'} | {result['peak_rss_mib']} | "
        f"{result['terms_sqlite_mib']} |"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=15_000_000, help="MRCONSO rows (default 15M)")
    parser.add_argument("--work", type=Path, default=ROOT / "bench-work" / "umls")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.work / "META", args.work / "terms.sqlite")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    release = write_release(args.work / "META", args.rows)
    log.info("synthetic release: %s", release)
    done = subprocess.run([sys.executable, __file__, "--child", "--work", str(args.work)], check=True,
                          capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    record = {"command": " ".join(["scripts/bench_umls.py", *sys.argv[1:]]),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "release": release, "result": result}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(table(record))

if __name__ == "__main__":
    main()
