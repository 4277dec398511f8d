#!/usr/bin/env python
"""Speed benchmark, side by side in one run; prints one table and writes JSON.

Each stage runs in its own process, so its peak resident memory (ru_maxrss) is its own:

  encode     our TransformerEncoder.encode vs SentenceTransformer.encode: same model folder, same strings,
             same batch size; strings/s, ratio, and the largest cosine gap between their vectors
  search     ConceptIndex.search_vectors (FAISS + per-concept aggregation + names) vs raw FAISS vs
             brute-force numpy top-k over the same vectors (the SapBERT evaluation's search);
             queries/s and top-1 agreement
  build      build_index over the first N names of the MEDIC index (TSV): names/s
  link       the default MEDIC index linking the comparison mentions: acc@1, mentions/s (encode + search), peak RSS
  scispacy   scispaCy's TF-IDF candidate generator, built in memory over the same names, on the same
             mentions, in its own virtual environment (--scispacy-python): acc@1, mentions/s, build s, peak RSS

Comparison mentions: NCBI-disease dev (all) + BC5CDR dev (Disease), scored with linker.evaluate's
conventions and the MEDIC alt-id map.

    python scripts/bench_speed.py --json results/speed.json [--scispacy-python /tmp/scispacy-venv/bin/python]
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
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench_speed")


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def medic_names(index_dir: Path) -> list[tuple[str, str, bool]]:
    """``(concept_id, name, is_preferred)`` of every term of an index, in FAISS order."""
    from linker.termdb import TermDB

    db = TermDB(index_dir / "terms.sqlite")
    rows = db.terms(range(db.count("terms")))
    preferred = db.names(concept_id for concept_id, _ in rows.values())
    return [(c, t, t == preferred.get(c)) for _, (c, t) in sorted(rows.items())]


def comparison_mentions(data: Path) -> list[Any]:
    from linker.evaluate import read_mentions

    return (read_mentions(data / "ncbi_disease" / "dev.mentions.jsonl")
            + read_mentions(data / "bc5cdr" / "dev.mentions.jsonl", ["Disease"]))


def strings_for_encoding(index_dir: Path, n: int) -> list[str]:
    import random

    texts = list(dict.fromkeys(text for _, text, _ in medic_names(index_dir)))
    random.Random(13).shuffle(texts)
    return texts[:n]


# -- stages (each in its own process) -----------------------------------------------------------------------
def stage_encode(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from linker.encoder import TransformerEncoder

    texts = strings_for_encoding(args.medic_index, args.n_encode)
    ours = TransformerEncoder(args.model, batch_size=args.batch_size)
    if args.model is None:
        from linker.encoder import default_model_path

        st_folder = str(default_model_path())
    else:
        st_folder = str(Path(args.model))
    st = SentenceTransformer(st_folder, device=ours.device)
    warm = texts[:args.batch_size]
    ours.encode(warm)
    st.encode(warm, batch_size=args.batch_size)
    timings: dict[str, float] = {}
    results: dict[str, Any] = {}
    runs = {
        "linker": lambda: ours.encode(texts),
        "sentence-transformers": lambda: st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True,
                                                   convert_to_numpy=True),
    }
    for _ in range(args.repeats):  # interleaved, best of N: the machine may be shared
        for name, run in runs.items():
            started = time.perf_counter()
            results[name] = np.asarray(run(), dtype=np.float32)
            timings[name] = min(timings.get(name, float("inf")), time.perf_counter() - started)
    a, b = results["linker"], results["sentence-transformers"]
    gap = float(np.max(1.0 - np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))
    return {"model": ours.name, "strings": len(texts), "batch_size": args.batch_size, "device": ours.device,
            "repeats": args.repeats,
            "torch_threads": torch.get_num_threads(), "max_length": ours.max_length,
            "st_max_seq_length": st.max_seq_length,
            "seconds": {k: round(v, 3) for k, v in timings.items()},
            "strings_per_second": {k: round(len(texts) / v, 1) for k, v in timings.items()},
            "ratio_st_time_over_linker_time": round(timings["sentence-transformers"] / timings["linker"], 3),
            "max_cosine_gap": gap, "peak_rss_mib": peak_rss_mib()}


def stage_search(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from linker.index import ConceptIndex

    index = ConceptIndex.load(args.medic_index, gpu=False)
    texts = list(dict.fromkeys(m.text for m in comparison_mentions(args.data)))
    queries = index.encoder.encode(texts)
    k = args.k
    vectors = index.faiss.reconstruct_n(0, index.faiss.ntotal)
    n_names = max(32, 4 * k)  # what ConceptIndex fetches from FAISS for k concepts
    timings: dict[str, float] = {}

    def brute_force() -> np.ndarray:
        top = np.empty((len(queries), n_names), dtype=np.int64)
        for start in range(0, len(queries), 256):
            scores = queries[start:start + 256] @ vectors.T
            part = np.argpartition(-scores, n_names - 1, axis=1)[:, :n_names]
            order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
            top[start:start + 256] = np.take_along_axis(part, order, axis=1)
        return top

    runs = {
        "linker ConceptIndex.search_vectors": lambda: index.search_vectors(queries, texts, k),
        f"raw FAISS {index.meta['faiss']['factory']} top-{n_names} names": lambda: index.faiss.search(queries, n_names)[1],
        f"numpy brute force top-{n_names} names": brute_force,
    }
    outputs: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            outputs[name] = run()
            timings[name] = min(timings.get(name, float("inf")), time.perf_counter() - started)
    ours, faiss_ids, top = (outputs[name] for name in runs)
    agree = float(np.mean(top[:, 0] == faiss_ids[:, 0]))
    assert len(ours) == len(texts)
    return {"index": str(args.medic_index), "vectors": int(index.faiss.ntotal), "queries": len(texts), "k": k,
            "seconds": {key: round(v, 4) for key, v in timings.items()},
            "queries_per_second": {key: round(len(texts) / v, 1) for key, v in timings.items()},
            "top1_name_agreement_numpy_vs_faiss": agree, "peak_rss_mib": peak_rss_mib()}


def stage_build(args: argparse.Namespace) -> dict[str, Any]:
    from linker.build import build_index
    from linker.encoder import load_encoder
    from linker.sources import Source

    names = medic_names(args.medic_index)[:args.n_build]
    with tempfile.TemporaryDirectory() as tmp:
        tsv = Path(tmp) / "medic_subset.tsv"
        tsv.write_text("".join(f"{c}\t{t}\t{int(p)}\n" for c, t, p in names), encoding="utf-8")
        encoder = load_encoder(args.model, batch_size=args.batch_size)
        started = time.perf_counter()
        out = build_index(Source.open(tsv, "tsv"), Path(tmp) / "index", encoder=encoder, progress=False)
        seconds = time.perf_counter() - started
        meta = json.loads((out / "meta.json").read_text())
    full = json.loads((args.medic_index / "meta.json").read_text())
    return {"names": meta["counts"]["terms"], "seconds": round(seconds, 2),
            "names_per_second": round(meta["counts"]["terms"] / seconds, 1), "model": encoder.name,
            "full_medic_index_recorded": {"terms": full["counts"]["terms"],
                                          "build_seconds": full.get("build_seconds_last_run")},
            "peak_rss_mib": peak_rss_mib()}


def stage_link(args: argparse.Namespace) -> dict[str, Any]:
    from linker.evaluate import evaluate_normalization, index_mapper, index_ranker
    from linker.index import ConceptIndex

    started = time.perf_counter()
    index = ConceptIndex.load(args.medic_index, gpu=False)
    index.encoder  # noqa: B018 - load the model before timing
    load_seconds = time.perf_counter() - started
    mentions = comparison_mentions(args.data)
    result = evaluate_normalization(mentions, index_ranker(index, args.k),
                                    index_mapper(index.termdb, [args.data / "ctd_medic" / "medic_alt_ids.tsv"]))
    return {"system": f"linker {index.meta['encoder']['model']} + FAISS {index.meta['faiss']['factory']}",
            "load_seconds": round(load_seconds, 2), "build_seconds": index.meta.get("build_seconds_last_run"),
            "mentions": len(mentions), "query_seconds": result["seconds"],
            "mentions_per_second": result["mentions_per_second"], "acc@1": result["metrics"]["acc@1"],
            "acc@5": result["metrics"]["acc@5"], "counts": result["counts"], "peak_rss_mib": peak_rss_mib()}


def stage_scispacy(args: argparse.Namespace) -> dict[str, Any]:
    from linker.evaluate import IdMapper, index_mapper, score_normalization
    from linker.termdb import TermDB

    mentions = comparison_mentions(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        tsv, queries, out = Path(tmp) / "dict.tsv", Path(tmp) / "queries.json", Path(tmp) / "out.json"
        tsv.write_text("".join(f"{c}\t{t}\t{int(p)}\n" for c, t, p in medic_names(args.medic_index)), encoding="utf-8")
        queries.write_text(json.dumps([m.text for m in mentions]))
        started = time.perf_counter()
        proc = subprocess.run([args.scispacy_python, str(ROOT / "scripts" / "scispacy_tfidf_runner.py"), str(tsv),
                               str(queries), str(out), str(args.scispacy_k)], capture_output=True, text=True)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}",
                    "stderr_tail": proc.stderr[-2000:]}
        wall = time.perf_counter() - started
        record = json.loads(out.read_text())
    mapper: IdMapper = index_mapper(TermDB(args.medic_index / "terms.sqlite"),
                                    [args.data / "ctd_medic" / "medic_alt_ids.tsv"])
    scored = score_normalization(mentions, record.pop("rankings"), mapper)
    return {**record, "wall_seconds": round(wall, 1),
            "mentions_per_second": round(record["mentions"] / record["query_seconds"], 1),
            "acc@1": scored["metrics"]["acc@1"], "acc@5": scored["metrics"]["acc@5"], "counts": scored["counts"]}


STAGES = {"encode": stage_encode, "search": stage_search, "build": stage_build, "link": stage_link,
          "scispacy": stage_scispacy}


def run_stage(name: str, argv: list[str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    log.info("stage %s", name)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--stage", name, "--stage-out", str(out), *argv])
    if proc.returncode != 0:
        return {"error": f"stage {name} exited {proc.returncode}"}
    record = json.loads(out.read_text())
    out.unlink()
    record["stage_wall_seconds"] = round(time.perf_counter() - started, 1)
    return record


def format_table(results: dict[str, Any]) -> str:
    lines = []
    enc = results.get("encode")
    if enc and "error" not in enc:
        lines += [f"Encoding {enc['strings']} MEDIC names, {enc['model']}, batch {enc['batch_size']}, {enc['device']}, "
                  f"{enc['torch_threads']} torch threads, best of {enc['repeats']}", "",
                  "| encoder | strings/s | seconds |", "|---|---:|---:|"]
        lines += [f"| {name} | {enc['strings_per_second'][name]} | {enc['seconds'][name]} |" for name in enc["seconds"]]
        lines.append("")
        lines.append(f"ratio (sentence-transformers time / linker time): {enc['ratio_st_time_over_linker_time']}; "
                     f"largest cosine gap between the two encoders' vectors: {enc['max_cosine_gap']:.2e}")
        lines.append("")
    search = results.get("search")
    if search and "error" not in search:
        lines += [f"Search: {search['queries']} distinct mention vectors against {search['vectors']} MEDIC name vectors",
                  "", "| search | queries/s | seconds |", "|---|---:|---:|"]
        lines += [f"| {name} | {search['queries_per_second'][name]} | {search['seconds'][name]} |"
                  for name in search["seconds"]]
        lines.append("")
        lines.append(f"top-1 name agreement numpy vs FAISS: {search['top1_name_agreement_numpy_vs_faiss']:.4f}")
        lines.append("")
    build = results.get("build")
    if build and "error" not in build:
        lines.append(f"Index build: {build['names']} names in {build['seconds']} s = {build['names_per_second']} names/s "
                     f"(peak RSS {build['peak_rss_mib']} MiB); full MEDIC index as recorded: "
                     f"{build['full_medic_index_recorded']['terms']} names in "
                     f"{build['full_medic_index_recorded']['build_seconds']} s")
        lines.append("")
    link, sci = results.get("link"), results.get("scispacy")
    rows = [("linker", link)] + ([("scispaCy", sci)] if sci is not None else [])
    if link is None and sci is None:
        return "\n".join(lines)
    lines += ["Linking the same mentions (NCBI-disease dev + BC5CDR-disease dev) over the same MEDIC names", "",
              "| system | mentions | acc@1 | acc@5 | mentions/s | index build s | peak RSS MiB |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for label, rec in rows:
        if rec is None:
            continue
        if "error" in rec:
            lines.append(f"| {label} | failed: {rec['error']} | | | | | |")
            continue
        lines.append(f"| {rec['system']} | {rec['mentions']} | {rec['acc@1']:.4f} | {rec['acc@5']:.4f} | "
                     f"{rec['mentions_per_second']} | {rec['build_seconds']} | {rec['peak_rss_mib']} |")
    return "\n".join(lines)


def main() -> int:
    from linker.defaults import indexes_home

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("LINKER_DATA", "/work/shared/data")))
    parser.add_argument("--medic-index", type=Path, default=indexes_home() / "medic-minilm")
    parser.add_argument("--model", help="model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--n-encode", type=int, default=4000, help="names encoded by both encoders")
    parser.add_argument("--n-build", type=int, default=4000, help="names indexed by the build stage")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="encode and search timings: best of N (interleaved)")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--scispacy-python", help="python of a virtual environment with scispacy installed")
    parser.add_argument("--scispacy-k", type=int, default=30, help="neighbours asked of scispaCy (its linker's default)")
    parser.add_argument("--stages", default="encode,search,build,link,scispacy")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--stage-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.stage:
        args.stage_out.write_text(json.dumps(STAGES[args.stage](args)))
        return 0

    passthrough = ["--data", str(args.data), "--medic-index", str(args.medic_index), "--n-encode", str(args.n_encode),
                   "--n-build", str(args.n_build), "--batch-size", str(args.batch_size), "-k", str(args.k),
                   "--repeats", str(args.repeats),
                   "--scispacy-k", str(args.scispacy_k)]
    if args.model:
        passthrough += ["--model", args.model]
    if args.scispacy_python:
        passthrough += ["--scispacy-python", args.scispacy_python]
    results: dict[str, Any] = {}
    for name in [s.strip() for s in args.stages.split(",") if s.strip()]:
        if name == "scispacy" and not args.scispacy_python:
            results[name] = {"error": "not run: pass --scispacy-python"}
            continue
        results[name] = run_stage(name, passthrough)
    table = format_table(results)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "benchmark": "speed", "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                        "processor": platform.processor() or platform.machine()},
            "table": table, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
