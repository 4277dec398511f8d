#!/usr/bin/env python
"""Speed benchmark, side by side in one run; prints one table and writes JSON.

Each stage runs in its own process, so its peak resident memory (ru_maxrss) is its own:

  encode     the same strings through each encoder backend: torch float32, torch bf16 (where the CPU has
             native bf16), ONNX Runtime float32 and int8, and SentenceTransformer.encode; strings/s, ratio
             to sentence-transformers, cosine to torch float32
  search     ConceptIndex.search_vectors (FAISS + per-concept aggregation + names) vs raw FAISS vs
             brute-force numpy top-k over the same vectors; queries/s and top-1 agreement
  build      build_index over the first N names of the MEDIC index (TSV), torch and ONNX int8: names/s
  link       per backend, a MEDIC index built with it linking the comparison mentions (acc@1, acc@5,
             mentions/s, all embedded and with exact names of one concept skipped), HPO EXACT synonyms
             against an HPO preferred-names index (acc@1), and single warm queries (p50/mean ms, cache off);
             best of --repeats interleaved rounds, after one warm-up batch
  scispacy   scispaCy's TF-IDF candidate generator, built in memory over the same names, on the same
             mentions, in its own virtual environment (--scispacy-python): acc@1, mentions/s (best of --repeats)
  annotate   ``linker annotate`` docs/s on the NCBI-disease and BC5CDR dev abstracts, -p 1 and -p 2, fresh
             commands: today's settings (torch index, --set skip_exact=false), the new defaults
             (ONNX float32 index, exact names skipped) and the same with ONNX int8
  cli        wall time of fresh ``linker lookup`` commands, an exact name and a paraphrase, per index

Comparison mentions: NCBI-disease dev (all) + BC5CDR dev (Disease), scored with linker.evaluate's
conventions and the MEDIC alt-id map. Indexes the stages need are built under --work (resumable).

    python scripts/bench_speed.py --json docs/results/speed.json --scispacy-python /tmp/scispacy-venv/bin/python
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
    from linker.gold import read_mentions

    return (read_mentions(data / "ncbi_disease" / "dev.mentions.jsonl")
            + read_mentions(data / "bc5cdr" / "dev.mentions.jsonl", ["Disease"]))


def strings_for_encoding(index_dir: Path, n: int) -> list[str]:
    import random

    texts = list(dict.fromkeys(text for _, text, _ in medic_names(index_dir)))
    random.Random(13).shuffle(texts)
    return texts[:n]


# -- stages (each in its own process) -----------------------------------------------------------------------
ENCODERS = {"torch float32": ("torch", "float32"), "torch bf16": ("torch", "bf16"),
            "onnx float32": ("onnx", "float32"), "onnx int8": ("onnx", "int8")}
#: The backends whose indexes the link, annotate and cli stages compare.
LINK_BACKENDS = {"torch float32": ("torch", "float32"), "onnx float32": ("onnx", "float32"),
                 "onnx int8": ("onnx", "int8")}


def stage_encode(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from linker.encoders import default_model_path, load_encoder
    from linker.encoders.torch_backend import native_bf16_cpu

    texts = strings_for_encoding(args.medic_index, args.n_encode)
    encoders = {name: load_encoder(args.model, backend=backend, precision=precision, batch_size=args.batch_size)
                for name, (backend, precision) in ENCODERS.items() if precision != "bf16" or native_bf16_cpu()}
    st = SentenceTransformer(str(Path(args.model)) if args.model else str(default_model_path()), device="cpu")
    runs: dict[str, Any] = {name: (lambda e=e: e.encode(texts)) for name, e in encoders.items()}
    runs["sentence-transformers"] = lambda: st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True,
                                                      convert_to_numpy=True, show_progress_bar=False)
    for run in runs.values():  # warm up
        run()
    timings: dict[str, float] = {}
    results: dict[str, Any] = {}
    for _ in range(args.repeats):  # interleaved, best of N: the machine may be shared
        for name, run in runs.items():
            started = time.perf_counter()
            results[name] = np.asarray(run(), dtype=np.float32)
            timings[name] = min(timings.get(name, float("inf")), time.perf_counter() - started)
    reference = results["torch float32"]
    cosine = {name: np.sum(v * reference, axis=1) for name, v in results.items()}
    return {"model": encoders["torch float32"].name, "strings": len(texts), "batch_size": args.batch_size,
            "repeats": args.repeats, "torch_threads": torch.get_num_threads(), "native_bf16": native_bf16_cpu(),
            "seconds": {k: round(v, 3) for k, v in timings.items()},
            "strings_per_second": {k: round(len(texts) / v, 1) for k, v in timings.items()},
            "ratio_to_sentence_transformers": {k: round(timings["sentence-transformers"] / v, 2)
                                               for k, v in timings.items()},
            "cosine_to_torch_min": {k: round(float(c.min()), 4) for k, c in cosine.items()},
            "cosine_to_torch_mean": {k: round(float(c.mean()), 4) for k, c in cosine.items()},
            "peak_rss_mib": peak_rss_mib()}


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
    from linker.encoders import load_encoder
    from linker.sources import Source

    names = medic_names(args.medic_index)[:args.n_build]
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tsv = Path(tmp) / "medic_subset.tsv"
        tsv.write_text("".join(f"{c}\t{t}\t{int(p)}\n" for c, t, p in names), encoding="utf-8")
        for name, (backend, precision) in LINK_BACKENDS.items():
            encoder = load_encoder(args.model, backend=backend, precision=precision, batch_size=args.batch_size)
            started = time.perf_counter()
            out = build_index(Source.open(tsv, "tsv"), Path(tmp) / name.replace(" ", "-"), encoder=encoder,
                              progress=False)
            seconds = time.perf_counter() - started
            terms = json.loads((out / "meta.json").read_text())["counts"]["terms"]
            rows[name] = {"names": terms, "seconds": round(seconds, 2), "names_per_second": round(terms / seconds, 1)}
    return {"builds": rows, "peak_rss_mib": peak_rss_mib()}


def backend_index(args: argparse.Namespace, base: Path, backend: str, precision: str, *,
                  preferred_only: bool = False, build: bool = False) -> Path:
    """*base* for torch float32 over all names where *base* was built so, else the same source built with that
    encoder under --work (as ``linker build`` builds it today: ``--faiss auto``). A base index built with ONNX is
    not the torch row's index: that row then gets its own."""
    encoder = json.loads((base / "meta.json").read_text())["encoder"]
    torch_base = (encoder.get("backend", "torch"), encoder.get("precision", "float32")) == ("torch", "float32")
    if (backend, precision) == ("torch", "float32") and torch_base and not preferred_only:
        return base
    out = args.work / f"{base.name}--{backend}-{precision}{'-preferred' if preferred_only else ''}"
    if build:
        from linker.build import build_index
        from linker.encoders import load_encoder
        from linker.sources import Source

        ontology = json.loads((base / "meta.json").read_text())["ontology"]
        options: dict[str, Any] = dict(ontology.get("options") or {})
        if "alt_ids" in options:
            options["alt_ids"] = Path(options["alt_ids"])
        log.info("building %s (resumable)", out)
        build_index(Source.open(ontology["path"], ontology["format"], **options), out,
                    encoder=load_encoder(args.model, backend=backend, precision=precision), preferred_only=preferred_only)
    return out


def stage_prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Every index the link, annotate and cli stages read, built once (and reused by a rerun)."""
    built = []
    for backend, precision in LINK_BACKENDS.values():
        built.append(str(backend_index(args, args.medic_index, backend, precision, build=True)))
        built.append(str(backend_index(args, args.hpo_index, backend, precision, build=True)))
        built.append(str(backend_index(args, args.hpo_index, backend, precision, preferred_only=True, build=True)))
    return {"indexes": built}


def hpo_synonym_queries(index_dir: Path) -> list[Any]:
    """Every EXACT synonym of a live HPO term, as a mention whose gold id is that term."""
    from linker.gold import GoldMention
    from linker.sources import Source
    from linker.types import Term

    ontology = json.loads((index_dir / "meta.json").read_text())["ontology"]
    return [GoldMention("hp.obo", -1, -1, r.text, (r.concept_id,), r.kind or "EXACT")
            for r in Source.open(ontology["path"], "obo").records() if isinstance(r, Term) and r.scope == "EXACT"]


def stage_link(args: argparse.Namespace) -> dict[str, Any]:
    import statistics

    from linker.evaluate import evaluate_normalization, index_mapper, index_ranker
    from linker.index import ConceptIndex

    mentions = comparison_mentions(args.data)
    synonyms = hpo_synonym_queries(args.hpo_index)
    rows: dict[str, Any] = {}
    for name, (backend, precision) in LINK_BACKENDS.items():
        started = time.perf_counter()
        index = ConceptIndex.load(backend_index(args, args.medic_index, backend, precision), gpu=False)
        index.encoder  # noqa: B018 - load the model before timing
        load_seconds = time.perf_counter() - started
        mapper = index_mapper(index.termdb, [args.data / "ctd_medic" / "medic_alt_ids.tsv"])
        row: dict[str, Any] = {"load_seconds": round(load_seconds, 2), "mentions": len(mentions)}
        index.search([m.text for m in mentions[:64]], args.k)  # the runtime's first-batch set-up, outside the timing
        queries = [t for t in dict.fromkeys(m.text for m in mentions) if not index.exact_candidates([t])[0]]
        queries = queries[:args.n_single]
        singles: list[list[float]] = []
        for _ in range(args.repeats):  # interleaved rounds, best of N (as scispaCy's queries): the host may be shared
            for mode, skip in (("all embedded", False), ("exact names skipped", True)):
                index.embedding_cache.clear()
                result = evaluate_normalization(mentions, index_ranker(index, args.k, skip_unique_exact=skip), mapper)
                rate = result["mentions_per_second"]
                best = row.setdefault(mode, {"mentions_per_second": 0.0, "rounds": []})
                best["rounds"].append(rate)
                if rate > best["mentions_per_second"]:
                    best.update({"mentions_per_second": rate, "acc@1": result["metrics"]["acc@1"],
                                 "acc@5": result["metrics"]["acc@5"]})
            latencies = []
            for text in queries:
                index.embedding_cache.clear()  # a query not seen before
                t0 = time.perf_counter()
                index.search([text], args.k)
                latencies.append(1000 * (time.perf_counter() - t0))
            singles.append(latencies)
        best_round = min(singles, key=statistics.median)
        row["single_query_ms"] = {"queries": len(queries), "p50": round(statistics.median(best_round), 2),
                                  "mean": round(statistics.fmean(best_round), 2),
                                  "p50_rounds": [round(statistics.median(r), 2) for r in singles]}
        hpo = ConceptIndex.load(backend_index(args, args.hpo_index, backend, precision, preferred_only=True), gpu=False)
        scored = evaluate_normalization(synonyms, index_ranker(hpo, args.k), index_mapper(hpo.termdb, []))
        row["hpo_synonyms"] = {"queries": len(synonyms), "acc@1": scored["metrics"]["acc@1"]}
        rows[name] = row
    return {"backends": rows, "repeats": args.repeats, "peak_rss_mib": peak_rss_mib()}


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
                               str(queries), str(out), str(args.scispacy_k), str(args.repeats)],
                              capture_output=True, text=True)
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


ANNOTATE_SETTINGS = {  # label: (backend of the index, extra linker annotate arguments, environment)
    # LINKER_THINC_TORCH=1: spaCy imported as it was when issue 19 was filed (thinc imports torch)
    "today (torch, every mention embedded, thinc imports torch)": (("torch", "float32"), ["--set", "skip_exact=false"],
                                                                 {"LINKER_THINC_TORCH": "1"}),
    "new defaults, thinc imports torch": (("onnx", "float32"), [], {"LINKER_THINC_TORCH": "1"}),
    "new defaults (onnx float32, exact names skipped)": (("onnx", "float32"), [], {}),
    "onnx int8, exact names skipped": (("onnx", "int8"), [], {}),
}


def time_annotate(corpora: list[Path], settings: dict[str, tuple[list[str], dict[str, str]]],
                  processes: tuple[int, ...], rounds: int) -> list[dict[str, Any]]:
    """Each setting (label: extra ``linker annotate`` arguments, environment), corpus and -p as a fresh command,
    the settings interleaved in *rounds*; per row its walls, the best wall and docs/s by it, docs and mentions."""
    walls: dict[tuple[str, str, int], list[float]] = {}
    counts: dict[tuple[str, str, int], tuple[int, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for label, (extra, env) in settings.items():
                for corpus in corpora:
                    for n in processes:
                        key = (label, f"{corpus.parent.name}/{corpus.name}", n)
                        out = Path(tmp) / f"{sum(map(len, walls.values()))}.jsonl"  # a new output every run
                        started = time.perf_counter()
                        subprocess.run([sys.executable, "-m", "linker", "-q", "annotate", str(corpus), "-o", str(out),
                                        "-p", str(n), *extra], check=True, capture_output=True,
                                       env={**os.environ, **env})
                        walls.setdefault(key, []).append(time.perf_counter() - started)
                        lines = out.read_text().splitlines()
                        counts[key] = (len(lines), sum(len(json.loads(line)["mentions"]) for line in lines))
                        log.info("annotate %s: %.2f s", key, walls[key][-1])
    return [{"settings": label, "corpus": corpus, "processes": n, "docs": counts[label, corpus, n][0],
             "mentions": counts[label, corpus, n][1], "walls_s": [round(w, 2) for w in runs],
             "wall_s": round(min(runs), 2), "docs_per_s": round(counts[label, corpus, n][0] / min(runs), 2)}
            for (label, corpus, n), runs in walls.items()]


def stage_annotate(args: argparse.Namespace) -> dict[str, Any]:
    """Each setting, corpus and -p as a fresh command, the settings interleaved in --repeats rounds; best wall."""
    corpora = [args.data / "ncbi_disease" / "dev.docs.jsonl", args.data / "bc5cdr" / "dev.docs.jsonl"]
    settings = {label: (["--index", str(backend_index(args, args.hpo_index, backend, precision)), *extra], env)
                for label, ((backend, precision), extra, env) in ANNOTATE_SETTINGS.items()}
    rows = time_annotate(corpora, settings, (1, 2), args.repeats)
    return {"index": str(args.hpo_index), "repeats": args.repeats, "runs": rows}


def stage_cli(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for name, (backend, precision) in LINK_BACKENDS.items():
        index = backend_index(args, args.hpo_index, backend, precision)
        for kind, query in (("exact name", "Seizure"), ("paraphrase", "fits of the brain")):
            walls = []
            for _ in range(args.repeats + 1):
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "linker", "-q", "lookup", "--index", str(index), query],
                               check=True, capture_output=True)
                walls.append(time.perf_counter() - started)
            rows.append({"index": name, "kind": kind, "query": query, "best_s": round(min(walls), 2),
                         "median_s": round(sorted(walls)[len(walls) // 2], 2)})
    return {"runs": rows}


STAGES = {"prepare": stage_prepare, "encode": stage_encode, "search": stage_search, "build": stage_build,
          "link": stage_link, "scispacy": stage_scispacy, "annotate": stage_annotate, "cli": stage_cli}


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


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows] + [""])


def format_table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    enc = results.get("encode")
    if enc and "error" not in enc:
        lines += [f"Encoding {enc['strings']} MEDIC names, {enc['model']}, batch {enc['batch_size']}, "
                  f"{enc['torch_threads']} torch threads, best of {enc['repeats']} (native bf16: {enc['native_bf16']})", ""]
        lines += _table(["encoder", "strings/s", "× sentence-transformers", "cosine to torch (min / mean)"],
                        [[name, enc["strings_per_second"][name], enc["ratio_to_sentence_transformers"][name],
                          f"{enc['cosine_to_torch_min'][name]} / {enc['cosine_to_torch_mean'][name]}"]
                         for name in enc["seconds"]])
    search = results.get("search")
    if search and "error" not in search:
        lines += [f"Search: {search['queries']} distinct mention vectors against {search['vectors']} MEDIC name vectors", ""]
        lines += _table(["search", "queries/s", "seconds"],
                        [[name, search["queries_per_second"][name], search["seconds"][name]] for name in search["seconds"]])
    build = results.get("build")
    if build and "error" not in build:
        lines += ["Index build over the first MEDIC names", ""]
        lines += _table(["encoder", "names", "seconds", "names/s"],
                        [[name, r["names"], r["seconds"], r["names_per_second"]] for name, r in build["builds"].items()])
    link, sci = results.get("link"), results.get("scispacy")
    if link and "error" not in link:
        lines += ["Linking the same mentions (NCBI-disease dev + BC5CDR-disease dev) over the same MEDIC names; "
                  f"HPO EXACT synonyms over HPO preferred names; best of {link.get('repeats', 1)} rounds", ""]
        rows = []
        for name, r in link["backends"].items():
            for mode in ("all embedded", "exact names skipped"):
                m = r[mode]
                rows.append([f"linker {name}, {mode}", r["mentions"], f"{m['acc@1']:.4f}", f"{m['acc@5']:.4f}",
                             m["mentions_per_second"], f"{r['hpo_synonyms']['acc@1']:.4f}",
                             f"{r['single_query_ms']['p50']} / {r['single_query_ms']['mean']}"])
        if sci and "error" not in sci:
            rows.append([sci["system"], sci["mentions"], f"{sci['acc@1']:.4f}", f"{sci['acc@5']:.4f}",
                         sci["mentions_per_second"], "", ""])
        elif sci:
            rows.append([f"scispaCy: {sci['error']}", "", "", "", "", "", ""])
        lines += _table(["system", "mentions", "acc@1", "acc@5", "mentions/s", "HPO synonyms acc@1",
                         "single new query ms (p50 / mean)"], rows)
    ann = results.get("annotate")
    if ann and "error" not in ann:
        title = (f"linker annotate, fresh commands (wall includes start-up, best of {ann.get('repeats', 1)}), "
                 f"index {ann['index']}")
        lines += [title, ""]
        lines += _table(["settings", "corpus", "-p", "docs", "mentions", "wall s", "docs/s"],
                        [[r["settings"], r["corpus"], r["processes"], r["docs"], r["mentions"], r["wall_s"],
                          r["docs_per_s"]] for r in ann["runs"]])
    cli = results.get("cli")
    if cli and "error" not in cli:
        lines += ["linker lookup, fresh commands", ""]
        lines += _table(["index", "query", "best s", "median s"],
                        [[r["index"], f"{r['kind']} ({r['query']!r})", r["best_s"], r["median_s"]] for r in cli["runs"]])
    for name, record in results.items():
        if isinstance(record, dict) and "error" in record and name != "scispacy":
            lines.append(f"stage {name}: {record['error']}")
    return "\n".join(lines)


def main() -> int:
    from linker.defaults import indexes_home

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("LINKER_DATA", "/work/shared/data")))
    parser.add_argument("--medic-index", type=Path, default=indexes_home() / "medic-minilm",
                        help="MEDIC index built with torch float32 (linker build CTD_diseases.tsv.gz DIR)")
    parser.add_argument("--hpo-index", type=Path, default=indexes_home() / "hpo-minilm",
                        help="HPO index built with torch float32 (the default index of an earlier release)")
    parser.add_argument("--work", type=Path, default=ROOT / "bench-work", help="indexes built for the comparison")
    parser.add_argument("--n-single", type=int, default=200, help="single queries timed one by one")
    parser.add_argument("--model", help="model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--n-encode", type=int, default=4000, help="names encoded by both encoders")
    parser.add_argument("--n-build", type=int, default=4000, help="names indexed by the build stage")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2,
                        help="encode, search, link (and scispaCy's queries) and annotate timings: best of N "
                             "(interleaved)")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--scispacy-python", help="python of a virtual environment with scispacy installed")
    parser.add_argument("--scispacy-k", type=int, default=30, help="neighbours asked of scispaCy (its linker's default)")
    parser.add_argument("--stages", default="prepare,encode,search,build,link,scispacy,annotate,cli")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--stage-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.stage:
        args.stage_out.write_text(json.dumps(STAGES[args.stage](args)))
        return 0

    passthrough = ["--data", str(args.data), "--medic-index", str(args.medic_index), "--hpo-index", str(args.hpo_index),
                   "--work", str(args.work), "--n-single", str(args.n_single), "--n-encode", str(args.n_encode),
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
