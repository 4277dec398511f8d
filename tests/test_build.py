from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import HashEncoder

from linker import faiss_util, rescoring
from linker.build import build_index
from linker.errors import IndexMismatchError, IndexNotFoundError, LinkerError
from linker.index import ConceptIndex
from linker.sources import Source


def _vectors(folder: Path) -> np.ndarray:
    index = faiss.read_index(str(folder / "faiss.index"))
    return index.reconstruct_n(0, index.ntotal)


def _terms(folder: Path) -> list[tuple]:
    return sqlite3.connect(folder / "terms.sqlite").execute("SELECT * FROM terms ORDER BY id").fetchall()


def test_round_trip_meta(mini_index_dir: Path, mini_index: ConceptIndex) -> None:
    meta = json.loads((mini_index_dir / "meta.json").read_text())
    assert meta["format_version"] == 2
    assert meta["ontology"]["name"] == "mini" and meta["ontology"]["release"] == "mini/releases/2026-01-01"
    assert len(meta["ontology"]["sha256"]) == 64
    assert meta["encoder"] == {"model": mini_index.encoder.name, "dimension": 384, "pooling": "mean",
                               "normalized": True, "max_length": 256}
    assert meta["faiss"]["factory"] == "Flat"
    assert meta["counts"] == {"concepts": 21, "terms": 50, "alt_ids": 4, "distinct_texts": 49, "vectors": 50}
    assert not (mini_index_dir / ".build").exists()
    assert mini_index.faiss.ntotal == 50
    term_concepts, concept_ids = (np.load(mini_index_dir / name) for name in ("term_concepts.npy", "concept_ids.npy"))
    expected = [row[1] for row in sqlite3.connect(mini_index_dir / "terms.sqlite").execute(
        "SELECT id, concept_id FROM terms ORDER BY id")]
    assert [concept_ids[o].decode() for o in term_concepts] == expected and term_concepts.dtype == np.int32
    assert set(meta["files"]) >= {"terms.sqlite", "faiss.index", "term_concepts.npy", "concept_ids.npy"}


def test_an_index_of_the_old_format_says_how_to_rebuild_it(mini_index_dir: Path, tmp_path: Path) -> None:
    import shutil

    old = tmp_path / "old"
    shutil.copytree(mini_index_dir, old)
    meta = json.loads((old / "meta.json").read_text())
    (old / "meta.json").write_text(json.dumps({**meta, "format_version": 1}))
    with pytest.raises(LinkerError, match=r"an index of format 1; this linker reads format 2\. Rebuild it: "
                                          r"linker build .*mini\.obo .*old --force"):
        ConceptIndex.load(old)


def test_interrupted_build_resumes_to_the_same_index(data_dir: Path, tmp_path: Path) -> None:
    source = Source.open(data_dir / "mini.obo")
    whole = build_index(source, tmp_path / "whole", encoder=HashEncoder(), chunk_size=8, progress=False)

    class Killed(Exception):
        pass

    def kill_after_third(start: int) -> None:
        if start == 16:
            raise Killed

    with pytest.raises(Killed):
        build_index(source, tmp_path / "resumed", encoder=HashEncoder(), chunk_size=8, progress=False,
                    on_chunk=kill_after_third)
    assert not (tmp_path / "resumed" / "meta.json").exists()
    with pytest.raises(IndexNotFoundError, match="unfinished build"):
        ConceptIndex.load(tmp_path / "resumed")
    encoder = HashEncoder()
    build_index(source, tmp_path / "resumed", encoder=encoder, chunk_size=8, progress=False)
    embedded = [text for call in encoder.calls for text in call]
    assert len(embedded) == 49 - 24  # only the chunks after the third are embedded again
    assert np.array_equal(_vectors(whole), _vectors(tmp_path / "resumed"))
    assert _terms(whole) == _terms(tmp_path / "resumed")
    again = HashEncoder()
    build_index(source, tmp_path / "resumed", encoder=again, chunk_size=8, progress=False)
    assert again.calls == []  # a finished index with the same settings is left alone


def test_other_settings_discard_an_unfinished_build(data_dir: Path, tmp_path: Path) -> None:
    source = Source.open(data_dir / "mini.obo")

    def stop(start: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(source, tmp_path / "x", encoder=HashEncoder(), chunk_size=8, progress=False, on_chunk=stop)
    encoder = HashEncoder(dimension=8, name="other")
    build_index(source, tmp_path / "x", encoder=encoder, chunk_size=8, progress=False)
    assert sum(len(call) for call in encoder.calls) == 49
    assert faiss.read_index(str(tmp_path / "x" / "faiss.index")).d == 8


def test_model_index_mismatch_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    folder = build_index(Source.open(data_dir / "mini.obo"), tmp_path / "idx", encoder=HashEncoder(16), progress=False)
    with pytest.raises(IndexMismatchError, match=r"dimension 16 .* gives 384"):
        ConceptIndex.load(folder, encoder=HashEncoder(384, name="big"))
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    small = faiss.IndexFlatIP(16)
    small.add(np.ones((3, 16), dtype=np.float32))
    faiss.write_index(small, str(broken / "faiss.index"))
    with pytest.raises(IndexMismatchError, match="damaged faiss.index: 237 bytes where the build wrote"):
        ConceptIndex.load(broken).faiss  # noqa: B018 - read on first use
    meta = json.loads((broken / "meta.json").read_text())
    del meta["files"]["faiss.index"]  # no fingerprint to go by: the count still gives it away
    (broken / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IndexMismatchError, match="holds 3 vectors but terms.sqlite 50 terms"):
        ConceptIndex.load(broken).faiss  # noqa: B018 - read on first use
    meta["format_version"] = 99
    (broken / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IndexMismatchError, match="an index of format 99"):
        ConceptIndex.load(broken)


@pytest.mark.parametrize(("kind", "factory"), [("hnsw", "HNSW32,Flat"), ("ivf", "IVF"), ("Flat", "Flat")])
def test_faiss_kinds(data_dir: Path, tmp_path: Path, kind: str, factory: str) -> None:
    folder = build_index(Source.open(data_dir / "mini.obo"), tmp_path / kind, encoder=HashEncoder(),
                         faiss_kind=kind, progress=False)
    index = ConceptIndex.load(folder, encoder=HashEncoder())
    assert index.meta["faiss"]["factory"].startswith(factory)
    top = index.search(["Nephromegaly"], k=1)[0][0]
    assert top.concept_id == "HP:0000105" and top.exact


def test_auto_above_the_flat_bound_builds_one_graph_that_answers_as_flat(many_names: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A dictionary over the flat bound gets the graph preset, calibrated against an exact search, grown the
    same way by every build (a resumed or Spark build must equal a local one), with flat's best names."""
    monkeypatch.setattr(faiss_util, "AUTO_FLAT_MAX", 1_000)  # the 6,000 names are "large"
    encoder = HashEncoder(dimension=32)
    graphs = [build_index(Source.open(many_names), tmp_path / f"auto{i}", encoder=encoder, progress=False)
              for i in range(2)]
    flat = build_index(Source.open(many_names), tmp_path / "flat", encoder=encoder, faiss_kind="flat", progress=False)
    meta = json.loads((graphs[0] / "meta.json").read_text())["faiss"]
    assert meta["preset"] == "hnsw" and meta["factory"] == "HNSW32,Flat" and "efSearch" in meta["search_params"]
    assert meta["recall"]["reached"] and meta["recall"]["recall@10"] >= 0.9
    assert (graphs[0] / "faiss.index").read_bytes() == (graphs[1] / "faiss.index").read_bytes()
    queries = [f"variant {v} of name {c}" for c in range(0, 2000, 40) for v in range(3)]
    by_graph, by_flat = (ConceptIndex.load(folder, encoder=encoder).search(queries, k=1) for folder in (graphs[0], flat))
    agree = sum(g[0].concept_id == f[0].concept_id for g, f in zip(by_graph, by_flat))
    assert agree >= 0.95 * len(queries), f"{agree} of {len(queries)} queries found flat's best concept"


def test_auto_builds_flat_where_the_graph_misses_the_recall_target(many_names: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph that calibration cannot bring to the target is no index for ``auto``: an exact one is built, and
    meta.json says why; asked for by name, the graph is kept with the recall it reached."""
    monkeypatch.setattr(faiss_util, "AUTO_FLAT_MAX", 1_000)
    monkeypatch.setattr(rescoring, "TARGET_RECALL", 1.01)  # out of any index's reach
    encoder = HashEncoder(dimension=32)
    auto = build_index(Source.open(many_names), tmp_path / "auto", encoder=encoder, progress=False)
    meta = json.loads((auto / "meta.json").read_text())["faiss"]
    assert meta["preset"] == "flat" and meta["factory"] == "Flat" and meta["search_params"] == {}
    assert meta["auto_fallback"]["preset"] == "hnsw" and meta["auto_fallback"]["reached"] is False
    assert faiss.read_index(str(auto / "faiss.index")).ntotal == 6000
    top = ConceptIndex.load(auto, encoder=encoder).search(["name 17 variant 1"], k=1)[0][0]
    assert top.concept_id == "C00017" and top.exact
    named = json.loads((build_index(Source.open(many_names), tmp_path / "hnsw", encoder=encoder, faiss_kind="hnsw",
                                    progress=False) / "meta.json").read_text())["faiss"]
    assert named["preset"] == "hnsw" and named["recall"]["reached"] is False and "auto_fallback" not in named


@pytest.fixture(scope="module")
def many_names(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TSV ontology of 6,000 names (2,000 concepts of 3 names each): enough to train IVF and product codes."""
    path = tmp_path_factory.mktemp("many") / "many.tsv"
    path.write_text("".join(f"C{c:05d}\tname {c} variant {v}\t{int(v == 0)}\n" for c in range(2000) for v in range(3)))
    return path


@pytest.mark.parametrize("kind", ["hnsw-sq8", "ivf-sq8", "ivf-pq"])
def test_compressed_presets_rescore_and_record_their_recall(many_names: Path, tmp_path: Path, kind: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = HashEncoder(dimension=32)
    preread, read = [], faiss_util.preread
    monkeypatch.setattr(faiss_util, "preread", lambda path: (preread.append(Path(path).name), read(path)))
    folder = build_index(Source.open(many_names), tmp_path / kind, encoder=encoder, faiss_kind=kind, progress=False)
    meta = json.loads((folder / "meta.json").read_text())["faiss"]
    shortlists = rescoring.REFINED_SHORTLISTS if kind == "ivf-pq" else rescoring.SHORTLISTS  # ivf-pq: Refine codes
    assert meta["preset"] == kind and meta["rescore"] in shortlists and (folder / "vectors.f16.npy").exists()
    assert {t["shortlist"] for t in meta["recall"]["tuned"]} <= set(shortlists)
    assert "vectors.f16.npy" in json.loads((folder / "meta.json").read_text())["files"]
    recall = meta["recall"]
    assert recall["queries"] == 500 and 0.0 <= recall["recall@1"] <= 1.0 and 0.0 <= recall["recall@10"] <= 1.0
    # calibrated: the cheapest setting tried that reached the target on the tuning queries by more than
    # margin_se standard errors, else the cheapest within NEAR_BEST of the best recall reached
    assert recall["margin_se"] == rescoring.MARGIN_SE and all(t["se"] >= 0.0 for t in recall["tuned"])
    reached = [t for t in recall["tuned"] if t["recall@10"] - recall["margin_se"] * t["se"] >= recall["target"]]
    best = max(t["recall@10"] for t in recall["tuned"])
    chosen = reached[0] if reached else next(t for t in recall["tuned"]
                                             if t["recall@10"] >= best - rescoring.NEAR_BEST)
    assert chosen["shortlist"] == meta["rescore"]
    assert all(meta["search_params"][key] == value for key, value in chosen.items() if key in ("nprobe", "efSearch"))
    assert recall["tuned"][0]["shortlist"] == 4
    if reached:  # the sweep stops at the first setting that reaches the target
        assert recall["tuned"][-1] == reached[0]
    index = ConceptIndex.load(folder, encoder=encoder)
    queries = ["name 17 variant 1", "name 1999 variant 2 or so", "variant 0 of name 5"]
    ours = index.search(queries, k=5)
    # the file is read through once before FAISS maps it only where FAISS copies the codes (4-bit fast-scan lists)
    assert preread == (["faiss.index"] if kind == "ivf-pq" else [])
    assert ours[0][0].concept_id == "C00017" and ours[0][0].exact and len(ours[1]) == 5
    for query, row in zip(queries[1:], ours[1:]):  # re-scored: exact inner products (float16 rows), best first
        assert [c.score for c in row] == sorted((c.score for c in row), reverse=True)
        exact = encoder.encode([query]) @ encoder.encode([c.matched_text for c in row]).T
        np.testing.assert_allclose([c.score for c in row], exact[0], atol=5e-3)
    if kind == "hnsw-sq8":  # a graph over one-byte codes, re-scored: near exact on 6,000 names (margin kept)
        assert recall["recall@10"] >= 0.9


def test_a_file_just_written_is_resident(tmp_path: Path) -> None:
    """The probe that spares a cached index the read-through: pages just written are in the page cache."""
    import os

    path = tmp_path / "codes.bin"
    path.write_bytes(os.urandom(3 << 20))
    assert faiss_util.resident(str(path)) is hasattr(os, "RWF_NOWAIT")  # False where the system cannot tell


def test_compressed_index_calibrated_on_given_queries(many_names: Path, tmp_path: Path) -> None:
    encoder = HashEncoder(dimension=32)
    queries = [f"variant {v} of name {c}" for c in range(0, 2000, 10) for v in range(2)]
    folder = build_index(Source.open(many_names), tmp_path / "cal", encoder=encoder, faiss_kind="ivf-sq8",
                         progress=False, calibration=queries)
    recall = json.loads((folder / "meta.json").read_text())["faiss"]["recall"]
    assert recall["queries"] == len(queries) // 2 and recall["query"].startswith(f"{len(queries)} given query")
    # the reported recall is that of the given queries: recomputed here against an exact search, it agrees
    index = ConceptIndex.load(folder, encoder=encoder)
    vectors = encoder.encode(queries[1::2])
    names = encoder.encode(index.termdb.term_texts())
    exact = np.argsort(-(vectors @ names.T), axis=1, kind="stable")[:, :10]
    _, found = rescoring.search(index.faiss, index._rescoring_vectors(), vectors, 10,
                                index.meta["faiss"]["rescore"])
    texts = np.array(index.termdb.term_texts())
    ours = np.mean([len(set(texts[f]) & set(texts[e])) / len(set(texts[e])) for f, e in zip(found, exact)])
    assert abs(ours - recall["recall@10"]) < 0.02


def test_calibration_queries_read_from_text_or_mentions(tmp_path: Path) -> None:
    (tmp_path / "q.txt").write_text("\ufeffbig heart\n\nbig heart\nsmall kidney\n")
    assert rescoring.read_queries(tmp_path / "q.txt") == ["big heart", "small kidney"]
    (tmp_path / "q.jsonl").write_text('{"text": "fits"}\n{"text": "seizures", "ids": []}\n')
    assert rescoring.read_queries(tmp_path / "q.jsonl") == ["fits", "seizures"]
    (tmp_path / "bad.jsonl").write_text('{"text": "fits"}\n{"name": "x"}\n')
    with pytest.raises(LinkerError, match=r"bad.jsonl:2: expected a JSON object with a \"text\" field"):
        rescoring.read_queries(tmp_path / "bad.jsonl")
    (tmp_path / "one.txt").write_text("fits\n")
    with pytest.raises(LinkerError, match="at least two distinct queries"):
        rescoring.read_queries(tmp_path / "one.txt")


def test_auto_stays_flat_for_small_ontologies(data_dir: Path, tmp_path: Path) -> None:
    folder = build_index(Source.open(data_dir / "mini.obo"), tmp_path / "auto", encoder=HashEncoder(), progress=False)
    assert json.loads((folder / "meta.json").read_text())["faiss"]["preset"] == "flat"
    # on a CPU: flat, then a graph, then product codes; a GPU scans exactly up to the graph's bound
    assert [faiss_util.preset("auto", n, gpu=False) for n in (faiss_util.AUTO_FLAT_MAX, faiss_util.AUTO_FLAT_MAX + 1,
            faiss_util.AUTO_GRAPH_MAX, faiss_util.AUTO_GRAPH_MAX + 1)] == ["flat", "hnsw", "hnsw", "ivf-pq"]
    assert [faiss_util.preset("auto", n, gpu=True) for n in (faiss_util.AUTO_GRAPH_MAX,
            faiss_util.AUTO_GRAPH_MAX + 1)] == ["flat", "ivf-pq"]
    # 4 sqrt(n) lists, trained on 39 names per list once that is more than the usual sample; 4-bit codes
    # scanned, 8-bit codes of the same sub-vectors to re-rank by: 48 + 96 bytes a name
    assert faiss_util.factory_string("ivf-pq", 2_000_000, 384, gpu=False) == "IVF5656,PQ96x4fs,Refine(PQ96x8)"
    # a GPU has no fast scan: 8-bit codes of 8 dimensions behind OPQ, which it runs, 48 bytes
    assert faiss_util.factory_string("ivf-pq", 2_000_000, 384, gpu=True) == "OPQ48,IVF5656,PQ48"
    assert faiss_util.train_sample_size(10_000_000) == 39 * 12_649
    assert faiss_util.train_sample_size(1_000_000) == faiss_util.TRAIN_SAMPLE
    assert faiss_util.factory_string("ivf-pq", 10**9, 384, gpu=False).startswith(f"IVF{faiss_util.MAX_TRAIN_SAMPLE // 39},")


def test_filters_and_empty_result(data_dir: Path, tmp_path: Path) -> None:
    source = Source.open(data_dir / "mini.obo")
    preferred = build_index(source, tmp_path / "pref", encoder=HashEncoder(), preferred_only=True, progress=False)
    assert json.loads((preferred / "meta.json").read_text())["counts"]["terms"] == 21
    exact = build_index(source, tmp_path / "exact", encoder=HashEncoder(), scopes=["EXACT"], progress=False)
    texts = {row[2] for row in _terms(exact)}
    assert "Epileptic seizure" in texts and "Fits" not in texts and "Developmental delay" not in texts
    with pytest.raises(LinkerError, match="unknown synonym scope"):
        build_index(source, tmp_path / "bad", encoder=HashEncoder(), scopes=["SIMILAR"], progress=False)
    empty = tmp_path / "empty.tsv"
    empty.write_text("# nothing\n")
    with pytest.raises(LinkerError, match="no names read"):
        build_index(Source.open(empty), tmp_path / "none", encoder=HashEncoder(), progress=False)


def test_a_build_killed_before_meta_json_resumes(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import linker.build as build_module

    source = Source.open(data_dir / "mini.obo")
    whole = build_index(source, tmp_path / "whole", encoder=HashEncoder(), progress=False)
    real = build_module.write_json_atomic

    def killed_at_meta(path: Path, data: object) -> None:
        if path.name == "meta.json":
            raise KeyboardInterrupt  # terms.sqlite and faiss.index are in place, meta.json is not
        real(path, data)

    monkeypatch.setattr(build_module, "write_json_atomic", killed_at_meta)
    with pytest.raises(KeyboardInterrupt):
        build_index(source, tmp_path / "again", encoder=HashEncoder(), progress=False)
    monkeypatch.setattr(build_module, "write_json_atomic", real)
    again = build_index(source, tmp_path / "again", encoder=HashEncoder(), progress=False)
    assert np.array_equal(_vectors(again), _vectors(whole)) and not (again / ".build").exists()


@pytest.mark.parametrize("name", ["faiss.index", "terms.sqlite"])
def test_a_damaged_index_file_is_a_clear_error(data_dir: Path, tmp_path: Path, name: str) -> None:
    folder = build_index(Source.open(data_dir / "mini.obo"), tmp_path / "idx", encoder=HashEncoder(), progress=False)
    damaged = folder / name
    damaged.write_bytes(damaged.read_bytes()[:len(damaged.read_bytes()) // 3])
    with pytest.raises(LinkerError, match=rf"damaged .*rebuild the index"):
        ConceptIndex.load(folder).faiss  # noqa: B018 - FAISS is read on first use


def test_overwritten_or_swapped_files_are_caught_at_load_and_by_verify(data_dir: Path, tmp_path: Path) -> None:
    import shutil

    from click.testing import CliRunner

    from linker.cli import cli

    source = Source.open(data_dir / "mini.obo")
    folder = build_index(source, tmp_path / "idx", encoder=HashEncoder(), progress=False)
    other = build_index(source, tmp_path / "other", encoder=HashEncoder(dimension=16, name="other"), progress=False,
                        preferred_only=True)
    assert CliRunner().invoke(cli, ["verify", "--index", str(folder)]).exit_code == 0
    vectors = (folder / "faiss.index").read_bytes()
    middle = len(vectors) // 2
    (folder / "faiss.index").write_bytes(vectors[:middle] + bytes(64) + vectors[middle + 64:])  # same size
    with pytest.raises(LinkerError, match=r"damaged faiss.index: its bytes are not those the build wrote"):
        ConceptIndex.load(folder).faiss  # noqa: B018 - FAISS is read on first use
    result = CliRunner().invoke(cli, ["verify", "--index", str(folder)])
    assert result.exit_code == 1 and "faiss.index: content differs" in result.output
    (folder / "faiss.index").write_bytes(vectors)
    shutil.copy(other / "terms.sqlite", folder / "terms.sqlite")  # another index's dictionary
    with pytest.raises(LinkerError, match=r"damaged terms.sqlite"):
        ConceptIndex.load(folder)


def test_the_default_index_announces_its_build_before_it_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    import linker.build as build_module
    from linker import defaults

    monkeypatch.setenv("LINKER_INDEXES", str(tmp_path / "home"))
    announced: list[str] = []

    def fake_build(source: Source, out: Path, **options: object) -> Path:
        announced.extend(r.getMessage() for r in caplog.records)  # what was said before the build began
        return Path(out)

    monkeypatch.setattr(build_module, "build_index", fake_build)
    with caplog.at_level("WARNING", logger="linker.defaults"):
        defaults.ensure_default_index(progress=False)
    assert len(announced) == 1 and str(tmp_path / "home" / "hpo-minilm") in announced[0]
    assert f"about {defaults.DEFAULT_BUILD_TIME}" in announced[0] and "hp.obo" in announced[0]


def test_every_long_build_step_shows_progress(many_names: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_index(Source.open(many_names), tmp_path / "shown", encoder=HashEncoder(dimension=32), faiss_kind="ivf-sq8",
                progress=True)
    shown = capsys.readouterr().err
    for step in ("reading", "indexing the term dictionary", "embedding", "training FAISS IVF", "indexing:",
                 "writing float16 vectors", "calibrating against an exact search"):
        assert step in shown, step
