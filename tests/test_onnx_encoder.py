"""The ONNX Runtime backend embeds as the torch encoder does, is cached, and travels inside the index it built."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from linker.encoders import load_encoder
from linker.errors import LinkerError

pytestmark = pytest.mark.slow

SENTENCES = ["Seizure", "short stature", "An abnormal increase in the size of the kidney due to cysts.",
             "Glomérulopathie", "x", "Seizure", "her kidneys were enlarged and she had recurrent fevers"]


def _fixture_names(data_dir: Path) -> list[str]:
    names = [line.split(":", 1)[1].strip().split('"')[1] if line.startswith("synonym:") else line.split(":", 1)[1].strip()
             for line in (data_dir / "mini.obo").read_text().splitlines() if line.startswith(("name:", "synonym:"))]
    return SENTENCES + names


@pytest.mark.parametrize(("precision", "floor"), [("float32", 0.999), ("int8", 0.98)])
def test_onnx_embeds_as_torch_does(encoder, data_dir: Path, precision: str, floor: float) -> None:
    texts = _fixture_names(data_dir)
    onnx = load_encoder(backend="onnx", precision=precision, batch_size=5)  # padded batches of mixed length
    ours, reference = onnx.encode(texts), encoder.encode(texts)
    assert ours.shape == reference.shape and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)
    cosine = np.sum(ours * reference, axis=1)
    assert cosine.min() >= floor, texts[int(cosine.argmin())]
    assert onnx.describe() == {**encoder.describe(), "backend": "onnx", "precision": precision}


def test_batches_are_formed_by_tokens_not_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    # few characters, many tokens ("a b c d e": 5 words) against many characters, few tokens ("seizure
    # disorders"): sorted by characters the two would share no batch with their own kind
    texts = ["seizure disorders", "a b c d e f g", "hypertension", "x y z w v", "glomerulonephritis", "fits", "Seizure"]
    onnx = load_encoder(backend="onnx", batch_size=2)
    widths: list[list[int]] = []
    original = onnx._embed_batch

    def spy(batch: list) -> np.ndarray:
        widths.append([len(onnx.tokenizer.encode(item) if isinstance(item, str) else item) for item in batch])
        return original(batch)

    monkeypatch.setattr(onnx, "_embed_batch", spy)
    vectors = onnx.encode(texts)
    flat = [width for batch in widths for width in batch]
    assert flat == sorted(flat, reverse=True) and len(flat) == len(texts)  # longest tokenisations first
    monkeypatch.setattr(onnx, "_embed_batch", original)
    one_by_one = np.vstack([onnx.encode([text]) for text in texts])  # order restored; padding changes nothing
    assert np.sum(vectors * one_by_one, axis=1).min() > 0.99999


def test_texts_the_tokenizer_reads_alike_are_embedded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # the packaged MiniLM is uncased and strips accents: these six texts are two inputs
    texts = ["Breast cancer", "breast  cancer", "BREAST CANCER", "Glomérulopathie", "glomerulopathie", "breast cancer"]
    onnx = load_encoder(backend="onnx", batch_size=4)
    embedded: list[int] = []
    original = onnx._embed_batch

    def spy(batch: list) -> np.ndarray:
        embedded.extend(len(item) for item in batch)
        return original(batch)

    monkeypatch.setattr(onnx, "_embed_batch", spy)
    vectors = onnx.encode(texts)
    assert len(embedded) == 2
    monkeypatch.setattr(onnx, "_embed_batch", original)
    alone = np.vstack([onnx.encode([text]) for text in texts])
    assert np.sum(vectors * alone, axis=1).min() > 0.99999
    assert np.array_equal(vectors[0], vectors[2]) and np.array_equal(vectors[3], vectors[4])


def test_export_is_made_once_and_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    from linker.encoders import onnx_backend

    first = load_encoder(backend="onnx")
    monkeypatch.setattr(onnx_backend, "export", lambda *a, **k: pytest.fail("exported a second time"))
    again = load_encoder(backend="onnx")
    assert again.folder == first.folder and (first.folder / "encoder.json").exists()
    assert not [p for p in first.folder.parent.iterdir() if p.name.startswith(".export-")]  # no staging left


def test_unknown_backend_or_precision_is_a_clear_error() -> None:
    with pytest.raises(LinkerError, match="unknown encoder backend 'tensorrt'"):
        load_encoder(backend="tensorrt")
    with pytest.raises(LinkerError, match="the onnx backend has no precision 'bf16'"):
        load_encoder(backend="onnx", precision="bf16")


def test_an_onnx_index_ships_its_export_and_queries_embed_as_it_did(onnx_index_dir: Path, tmp_path: Path,
                                                                    _export_cache: Path) -> None:
    from linker.index import ConceptIndex

    meta = json.loads((onnx_index_dir / "meta.json").read_text())["encoder"]
    assert (meta["backend"], meta["precision"], meta["onnx_dir"]) == ("onnx", "int8", "onnx")
    moved = tmp_path / "moved"
    shutil.copytree(onnx_index_dir, moved)
    # the index needs neither the export cache nor torch to answer a query that must be embedded
    script = ("import sys; from linker.index import ConceptIndex; "
              f"index = ConceptIndex.load({str(moved)!r}); top = index.search(['fits of the brain'], k=1)[0][0]; "
              "print(top.concept_id, type(index.encoder).__name__, 'torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={"LINKER_CACHE": str(tmp_path / "empty-cache"), "PATH": "/usr/bin:/bin"})
    concept, backend, torch_loaded, transformers_loaded = out.stdout.split()
    assert backend == "OnnxEncoder" and torch_loaded == "False" and transformers_loaded == "False"
    assert concept == ConceptIndex.load(onnx_index_dir).search(["fits of the brain"], k=1)[0][0].concept_id


def test_a_damaged_export_is_a_clear_error(onnx_index_dir: Path, tmp_path: Path) -> None:
    from linker.index import ConceptIndex

    broken = tmp_path / "broken"
    shutil.copytree(onnx_index_dir, broken)
    (broken / "onnx" / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(LinkerError, match="damaged onnx/model.onnx: 11 bytes where the build wrote"):
        ConceptIndex.load(broken).search(["fits"], k=1)
    meta = json.loads((broken / "meta.json").read_text())  # without its fingerprint, ONNX Runtime says it
    meta["files"] = {name: entry for name, entry in meta["files"].items() if not name.startswith("onnx/")}
    (broken / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(LinkerError, match="model.onnx cannot be loaded"):
        ConceptIndex.load(broken).search(["fits"], k=1)


def test_an_onnx_index_runs_in_forked_pipeline_processes(onnx_index_dir: Path) -> None:
    from linker.pipeline import load_pipeline

    nlp = load_pipeline(onnx_index_dir, skip_exact=False)
    texts = ["Seizures and fever.", "No fever, but ataxia.", "Large kidneys.", "Fits."]
    single = [[(e.text, e.kb_id_) for e in doc.ents] for doc in nlp.pipe(texts)]  # the parent used its session
    double = [[(e.text, e.kb_id_) for e in doc.ents] for doc in nlp.pipe(texts, n_process=2, batch_size=1)]
    assert double == single and any(single)
