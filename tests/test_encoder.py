"""The encoder embeds exactly as the BioLORD / sentence-transformers model cards do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from linker.encoders import default_model_path, resolve_model
from linker.errors import ModelNotFoundError

SENTENCES = ["Seizure", "short stature", "An abnormal increase in the size of the kidney due to cysts.",
             "Glomérulopathie", "x", "Seizure", "her kidneys were enlarged and she had recurrent fevers"]


def _model_card_embeddings(sentences: list[str]) -> np.ndarray:
    """The reference code of the BioLORD-2023 model card: one padded batch, mean pooling, L2 normalisation."""
    from transformers import AutoModel, AutoTokenizer

    path = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path)
    encoded = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        output = model(**encoded)
    token_embeddings = output[0]
    mask = encoded["attention_mask"].unsqueeze(-1).expand(token_embeddings.size()).float()
    pooled = torch.sum(token_embeddings * mask, 1) / torch.clamp(mask.sum(1), min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()


def test_matches_model_card_code(encoder) -> None:
    ours = encoder.encode(SENTENCES, batch_size=3)
    reference = _model_card_embeddings(SENTENCES)
    cosine = np.sum(ours * reference, axis=1)
    assert cosine.min() > 0.9999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_matches_sentence_transformers(encoder) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(default_model_path()), device="cpu").encode(SENTENCES)
    assert np.sum(encoder.encode(SENTENCES) * reference, axis=1).min() > 0.9999


def test_order_restored_and_duplicates_embedded_once(encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    original = encoder._embed_batch

    def spy(batch: list[str]) -> np.ndarray:
        seen.extend(batch)
        return original(batch)

    monkeypatch.setattr(encoder, "_embed_batch", spy)
    vectors = encoder.encode(SENTENCES, batch_size=2)
    assert sorted(seen) == sorted(set(SENTENCES))
    assert np.array_equal(vectors[0], vectors[5])
    single = encoder.encode(["short stature"])
    assert float(vectors[1] @ single[0]) > 0.9999
    assert encoder.encode([]).shape == (0, encoder.dimension)


def test_describes_itself(encoder) -> None:
    assert encoder.describe() == {"model": encoder.name, "dimension": 384, "pooling": "mean", "normalized": True,
                                  "max_length": 256}


def test_sentence_transformers_folder_and_errors(tmp_path) -> None:
    name, location, max_length = resolve_model(None)
    assert max_length == 256 and location == default_model_path()
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "nowhere"))
    empty = tmp_path / "empty-model"
    empty.mkdir()
    from linker.encoders import load_encoder

    with pytest.raises(ModelNotFoundError, match="cannot load model"):
        load_encoder(str(empty))


def test_encode_from_several_threads(encoder) -> None:
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"abnormality number {i} of the kidney" for i in range(48)]
    expected = encoder.encode(texts, batch_size=4)
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda i: encoder.encode(texts[i:i + 4], batch_size=2), range(0, 48, 4)))
    assert np.allclose(np.concatenate(results), expected, atol=1e-5)


def test_bf16_embeddings_stay_close_to_float32_and_are_described(encoder) -> None:
    from linker.encoders import load_encoder
    from linker.errors import LinkerError

    bf16 = load_encoder(precision="bf16")
    vectors = bf16.encode(SENTENCES)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(vectors * encoder.encode(SENTENCES), axis=1)
    assert cosine.min() > 0.99 and cosine.min() < 0.99999  # close, but computed in bf16
    assert bf16.describe()["precision"] == "bf16" and "precision" not in encoder.describe()
    with pytest.raises(LinkerError, match="'fp8'"):
        load_encoder(precision="fp8")


def test_an_index_embeds_queries_in_the_precision_it_was_built_with(tmp_path, data_dir) -> None:
    import json

    from linker.build import build_index
    from linker.encoders import load_encoder
    from linker.index import ConceptIndex
    from linker.sources import Source

    out = build_index(Source.open(data_dir / "mini.obo"), tmp_path / "bf16", encoder=load_encoder(precision="bf16"),
                      progress=False)
    assert json.loads((out / "meta.json").read_text())["encoder"]["precision"] == "bf16"
    index = ConceptIndex.load(out)
    assert index.encoder.precision == "bf16"
    assert index.search(["Seizures"], k=1)[0][0].concept_id == "HP:0001250"


def test_a_lone_surrogate_does_not_fail_the_batch(encoder) -> None:
    vectors = encoder.encode(["Seizure", "seiz\ud800ure"])
    assert np.allclose(vectors[1], encoder.encode(["seiz?ure"])[0], atol=1e-5)
