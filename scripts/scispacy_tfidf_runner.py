#!/usr/bin/env python
"""Run scispaCy's TF-IDF candidate generator over a given dictionary (helper of bench_speed.py).

Runs in scispaCy's own virtual environment (it pins numpy<2), never imports ``linker``:

    python -m venv /tmp/scispacy-venv && /tmp/scispacy-venv/bin/pip install scispacy
    /tmp/scispacy-venv/bin/python scripts/scispacy_tfidf_runner.py DICT.tsv QUERIES.json OUT.json [K [REPEATS]]

DICT.tsv is ``concept_id<TAB>name<TAB>is_preferred``; QUERIES.json a JSON list of strings. OUT.json gets,
per query, concept ids ranked by their best alias similarity (ties by concept id), plus timings (the queries run
REPEATS times, the fastest kept) and peak RSS.

The index is built in memory (``create_tfidf_ann_index(None, kb)``). scispaCy refuses to build on
scipy>=1.11 (Python 3.11) because it *saves* the TF-IDF vectors as float16; nothing is saved here, so
the check ``scispacy.candidate_generation.scipy_supports_sparse_float16`` is patched to pass.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import time
from collections import defaultdict


def main() -> int:
    dictionary, queries_path, out_path = sys.argv[1:4]
    k = int(sys.argv[4]) if len(sys.argv) > 4 else 30
    repeats = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    started = time.perf_counter()
    from scispacy import candidate_generation
    from scispacy.linking_utils import Entity, KnowledgeBase

    candidate_generation.scipy_supports_sparse_float16 = lambda: True  # nothing is saved as float16 here
    names: dict[str, list[str]] = defaultdict(list)
    canonical: dict[str, str] = {}
    with open(dictionary, encoding="utf-8") as handle:
        for line in handle:
            concept_id, name, preferred = line.rstrip("\n").split("\t")
            names[concept_id].append(name)
            if preferred == "1" or concept_id not in canonical:
                canonical[concept_id] = name
    kb = KnowledgeBase([Entity(cid, canonical[cid], aliases) for cid, aliases in names.items()])
    import_seconds = time.perf_counter() - started
    build_started = time.perf_counter()
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        aliases, vectorizer, ann_index = candidate_generation.create_tfidf_ann_index(None, kb)
    build_seconds = time.perf_counter() - build_started
    generator = candidate_generation.CandidateGenerator(ann_index=ann_index, tfidf_vectorizer=vectorizer,
                                                        ann_concept_aliases_list=aliases, kb=kb)
    queries = json.load(open(queries_path, encoding="utf-8"))
    rounds = []
    for _ in range(repeats):  # best of N, as bench_speed.py times the linker
        query_started = time.perf_counter()
        batches = generator(queries, k)
        rankings = []
        for candidates in batches:
            scored = sorted(((max(c.similarities), c.concept_id) for c in candidates), key=lambda s: (-s[0], s[1]))
            rankings.append([concept_id for _, concept_id in scored])
        rounds.append(time.perf_counter() - query_started)
    query_seconds = min(rounds)
    import numpy
    import scipy
    import scispacy

    json.dump({
        "system": f"scispaCy {scispacy.__version__} TF-IDF char-3-gram + nmslib HNSW (k={k})",
        "versions": {"scispacy": scispacy.__version__, "numpy": numpy.__version__, "scipy": scipy.__version__},
        "aliases": len(aliases), "concepts": len(names),
        "load_seconds": round(import_seconds, 2), "build_seconds": round(build_seconds, 2),
        "query_seconds": round(query_seconds, 3), "query_seconds_rounds": [round(r, 3) for r in rounds],
        "mentions": len(queries),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rankings": rankings,
    }, open(out_path, "w", encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
