#!/usr/bin/env python
"""Split an annotated corpus (docs JSONL + the mentions JSONL beside it) into two halves by document, so that
one half can join training while the other is scored: a held-out estimate of what refitting on a dev split
gains (docs/detector.md, "Refit on train + dev").

A document goes to half ``zlib.crc32(doc_id) % 2``: the same halves on every machine and for every run.

    python scripts/split_halves.py ../shared/data/bc5cdr/dev.docs.jsonl --out halves/bc5cdr_dev
    # -> halves/bc5cdr_dev0.docs.jsonl, halves/bc5cdr_dev0.mentions.jsonl, halves/bc5cdr_dev1.…
"""

from __future__ import annotations

import argparse
import json
import logging
import zlib
from pathlib import Path

from linker.train.annotated import mentions_path

log = logging.getLogger("split_halves")


def half_of(doc_id: str) -> int:
    return zlib.crc32(doc_id.encode("utf-8")) % 2


def split(docs: Path, out: str) -> dict[str, int]:
    """Write ``OUT{0,1}.docs.jsonl`` and ``OUT{0,1}.mentions.jsonl``; returns the lines written per file."""
    counts: dict[str, int] = {}
    for kind, source in (("docs", docs), ("mentions", mentions_path(docs))):
        targets = [Path(f"{out}{half}.{kind}.jsonl") for half in (0, 1)]
        targets[0].parent.mkdir(parents=True, exist_ok=True)
        handles = [t.open("w", encoding="utf-8") for t in targets]
        try:
            with source.open(encoding="utf-8") as lines:
                for line in lines:
                    if line.strip():
                        handles[half_of(json.loads(line)["doc_id"])].write(line)
        finally:
            for handle in handles:
                handle.close()
        for target in targets:
            counts[str(target)] = sum(1 for _ in target.open(encoding="utf-8"))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("docs", type=Path, help="a docs JSONL with its .mentions.jsonl beside it")
    parser.add_argument("--out", required=True, help="prefix of the four files written")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path, n in split(args.docs, args.out).items():
        log.info("%s: %d lines", path, n)


if __name__ == "__main__":
    main()
