"""The float16 rows a compressed index re-scores with: read by row, never mapped; how many are re-scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import HashEncoder

from linker import rescoring
from linker.build import build_index
from linker.errors import IndexMismatchError
from linker.index import ConceptIndex
from linker.sources import Source


def test_row_file_reads_the_rows_asked_for(tmp_path: Path) -> None:
    rows = np.random.default_rng(0).standard_normal((1000, 24)).astype(np.float16)
    np.save(tmp_path / "v.npy", rows)
    table = rescoring.RowFile(tmp_path / "v.npy")
    assert len(table) == 1000 and table.shape == (1000, 24)
    # repeats, runs of consecutive rows (read together) and scattered rows, in any order, as asked
    ids = np.array([[999, 3, 4, 5, 3], [0, 998, 500, 6, 999]])
    np.testing.assert_array_equal(table[ids], rows[ids.ravel()])
    assert table[np.array([], dtype=np.int64)].shape == (0, 24)
    with pytest.raises(IndexError, match="1000"):
        table[np.array([1000])]


def test_row_file_refuses_a_cut_or_foreign_file(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.ones((100, 8), dtype=np.float16))
    data = (tmp_path / "v.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-5])
    with pytest.raises(ValueError, match="cut.npy"):
        rescoring.RowFile(tmp_path / "cut.npy")
    np.save(tmp_path / "one.npy", np.ones(8, dtype=np.float16))
    with pytest.raises(ValueError, match="2-D"):
        rescoring.RowFile(tmp_path / "one.npy")


def test_the_shortlist_is_the_calibrated_one_whatever_the_names_wanted() -> None:
    # calibrated for the best ten: a 32x shortlist is 320 names, for 10 or 32 names wanted alike
    assert rescoring.shortlist_width(10_000_000, 10, 32) == 320
    assert rescoring.shortlist_width(10_000_000, 32, 32) == 320
    # never fewer than SHORTLIST per name wanted, never more than the index holds
    assert rescoring.shortlist_width(10_000_000, 100, 4) == 100 * rescoring.SHORTLIST
    assert rescoring.shortlist_width(50, 32, 32) == 50


def test_a_search_reads_its_rows_without_mapping_the_vectors(tmp_path: Path) -> None:
    path = tmp_path / "many.tsv"
    path.write_text("".join(f"C{c:04d}\tname {c} variant {v}\t{int(v == 0)}\n" for c in range(700) for v in range(3)))
    encoder = HashEncoder(dimension=32)
    folder = build_index(Source.open(path), tmp_path / "idx", encoder=encoder, faiss_kind="ivf-sq8", progress=False)
    index = ConceptIndex.load(folder, encoder=encoder)
    found = index.search(["variant 2 of name 17", "name 640 variant 0"], k=5)
    assert found[1][0].concept_id == "C0640" and len(found[0]) == 5
    maps = Path("/proc/self/maps")
    if maps.exists():  # the rows went through the page cache, not into this process's mappings
        assert rescoring.VECTORS_FILE not in maps.read_text()
    # a damaged vector file is named, with the command that rebuilds
    meta = json.loads((folder / "meta.json").read_text())
    meta.pop("files", None)  # checksums aside: the file itself is what is damaged here
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder / rescoring.VECTORS_FILE).write_bytes((folder / rescoring.VECTORS_FILE).read_bytes()[:-10])
    with pytest.raises(IndexMismatchError, match="rebuild"):
        ConceptIndex.load(folder, encoder=encoder).search(["name 3 variant 1"], k=5)


def test_float16_rows_decode_to_the_same_float32_as_numpy() -> None:
    rows = np.random.default_rng(1).standard_normal((50, 40)).astype(np.float16)
    np.testing.assert_array_equal(rescoring.as_float32(rows), rows.astype(np.float32))
    assert rescoring.as_float32(rows[:0]).shape == (0, 40)


def test_recall_carries_the_standard_error_that_calibration_keeps_a_margin_of() -> None:
    truth = np.arange(40).reshape(4, 10)
    found = truth.copy()
    found[0, :5] = -1  # the first query finds half of its ten; the others all
    terms = np.arange(40)
    at1, at10, error = rescoring._recall(found, truth, None, terms, 10)
    per_query = [0.5, 1.0, 1.0, 1.0]
    assert at1 == 0.75 and at10 == pytest.approx(np.mean(per_query))
    assert error == pytest.approx(np.std(per_query, ddof=1) / 2)
    assert rescoring._recall(truth, truth, None, terms, 10) == (1.0, 1.0, 0.0)


def test_a_refined_index_reads_only_the_best_of_its_shortlist_from_disk() -> None:
    from linker import faiss_util

    rng = np.random.default_rng(0)
    names = rng.standard_normal((6000, 32)).astype(np.float32)
    names /= np.linalg.norm(names, axis=1, keepdims=True)
    index = faiss_util.faiss.index_factory(32, "IVF16,PQ8x4fs,Refine(PQ8x8)", faiss_util.faiss.METRIC_INNER_PRODUCT)
    index.train(names)
    index.add(names)
    faiss_util.apply_params(index, {"nprobe": 16})

    class Counted:
        def __init__(self) -> None:
            self.read: list[int] = []

        def __getitem__(self, ids: np.ndarray) -> np.ndarray:
            self.read.append(len(ids))
            return names[ids].astype(np.float16)

    rows = Counted()
    scores, ids = rescoring.search(index, rows, names[:3], 5, shortlist=64)  # 640 shortlisted by the 4-bit codes
    assert rows.read == [3 * rescoring.CALIBRATED_K * rescoring.REFINED]  # 320 a query re-ranked and read
    assert ids[:, 0].tolist() == [0, 1, 2] and np.allclose(scores[:, 0], 1.0, atol=1e-3)  # re-scored exactly
    exact = names[:3] @ names[ids[0]].T
    np.testing.assert_allclose(scores[0], exact[0], atol=2e-3)
    # an index without refinement codes re-scores its whole shortlist
    plain = faiss_util.faiss.index_factory(32, "IVF16,PQ8x4fs", faiss_util.faiss.METRIC_INNER_PRODUCT)
    plain.train(names)
    plain.add(names)
    rows.read.clear()
    rescoring.search(plain, rows, names[:3], 5, shortlist=64)
    assert rows.read == [3 * 640]


def test_names_of_equal_score_come_in_row_order_whatever_faiss_gave() -> None:
    """One name held by several concepts is one vector per concept: FAISS returns them in the order its threads
    met them, so that order is set here (the linker then breaks the tie by meaning)."""
    scores = np.array([[0.9, 0.8, 0.8 + 1e-8, 0.5], [0.7, 0.7, 0.1, -3.4e38]], dtype=np.float32)
    ids = np.array([[3, 9, 2, 5], [8, 1, 4, -1]])
    swapped = (scores[:, [0, 2, 1, 3]], ids[:, [0, 2, 1, 3]])
    for given in ((scores, ids), swapped):
        ordered_scores, ordered_ids = rescoring.ties_by_row(*given)
        assert ordered_ids.tolist() == [[3, 2, 9, 5], [1, 8, 4, -1]]
        assert np.all(np.diff(ordered_scores.astype(np.float64), axis=1) <= 1e-6)
