"""spaCy imported without thinc's torch layers where the pipeline needs none (linker/spacy_import.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from linker.spacy_import import ENV, needs_thinc_torch

SPACY_NER = '''[components.ner]
factory = "ner"

[components.ner.model]
@architectures = "spacy.TransitionBasedParser.v2"

[components.ner.model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
'''
TRANSFORMER = '''[components.transformer]
factory = "transformer"

[components.transformer.model]
@architectures = "spacy-transformers.TransformerModel.v3"
name = "roberta-base"
'''


def _pipeline(tmp_path: Path, name: str, config: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.cfg").write_text('[nlp]\nlang = "en"\npipeline = ["x"]\n\n' + config)
    return folder


def test_only_models_outside_spacy_keep_thinc_torch(tmp_path: Path) -> None:
    assert not needs_thinc_torch(None)
    assert not needs_thinc_torch(_pipeline(tmp_path, "ner", SPACY_NER))
    assert not needs_thinc_torch(_pipeline(tmp_path, "ours", '[components.linker_tagger]\nfactory = "linker_tagger"\n'
                                                            'model = null\n'))
    assert needs_thinc_torch(_pipeline(tmp_path, "trf", TRANSFORMER))
    assert needs_thinc_torch(_pipeline(tmp_path, "torch", '[components.x.model]\n@layers = "PyTorchWrapper.v2"\n'))
    assert needs_thinc_torch("en_core_sci_sm")  # a package name: its config is not read
    assert needs_thinc_torch(tmp_path)  # a folder without config.cfg


def _run(script: str, env: dict[str, str] | None = None) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_annotating_with_an_onnx_index_never_imports_torch(onnx_index_dir: Path) -> None:
    pytest.importorskip("torch")
    script = f"""
import json, sys
from linker.annotate import PipelineAnnotator
mentions = PipelineAnnotator(index={str(onnx_index_dir)!r})(["She had seizures and large kidneys."])
import thinc.compat
had_torch = "torch" in sys.modules
import torch  # un-hidden: later code that needs torch still gets it
print(json.dumps({{"ids": [m.concept_id for m in mentions[0]], "torch": had_torch,
                  "thinc_torch": thinc.compat.has_torch, "tensor": float(torch.ones(1).sum())}}))
"""
    record = _run(script)
    assert record == {"ids": ["HP:0001250", "HP:0000105"], "torch": False, "thinc_torch": False, "tensor": 1.0}


def test_the_environment_keeps_thinc_torch(onnx_index_dir: Path) -> None:
    pytest.importorskip("torch")
    script = """
import json, sys
from linker.spacy_import import import_spacy
hidden = import_spacy()
import thinc.compat
print(json.dumps({"hidden": hidden, "thinc_torch": thinc.compat.has_torch}))
"""
    assert _run(script) == {"hidden": True, "thinc_torch": False}
    assert _run(script, {ENV: "1"}) == {"hidden": False, "thinc_torch": True}


def test_the_annotate_command_never_imports_torch(onnx_index_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    """Planning the run (its settings checked, a pipeline's index found) must not import spaCy before the guard."""
    pytest.importorskip("torch")
    out = tmp_path / "out.jsonl"
    argv = ["-q", "annotate", str(data_dir / "mini_corpus.docs.jsonl"), "-o", str(out), "--index", str(onnx_index_dir),
            "--set", "threshold=0.7"]
    script = f"""
import json, sys
from linker.cli import cli
try:
    cli.main(args={argv!r}, prog_name="linker")
except SystemExit as done:
    assert not done.code, done.code
print(json.dumps({{"torch": "torch" in sys.modules, "spacy": "spacy" in sys.modules}}))
"""
    assert _run(script) == {"torch": False, "spacy": True}
    assert sum(len(json.loads(line)["mentions"]) for line in out.read_text().splitlines()) > 0
