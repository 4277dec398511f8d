"""Work that is not needed is not done: exact names skip the model, and cheap commands skip torch and faiss."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from linker.index import ConceptIndex

from conftest import HashEncoder


@pytest.fixture()
def spied_index(mini_index_dir: Path) -> tuple[ConceptIndex, HashEncoder]:
    """The mini index searched through a recording encoder (384 dimensions, as the index)."""
    from linker.encoders import load_encoder

    real = load_encoder()

    class Spy(HashEncoder):
        def encode(self, texts, **kwargs):  # type: ignore[no-untyped-def]
            self.calls.append(list(texts))
            return real.encode(texts)

    spy = Spy(384, name=real.name)
    return ConceptIndex.load(mini_index_dir, encoder=spy), spy


def test_a_name_of_one_concept_is_answered_without_embedding(spied_index) -> None:
    index, spy = spied_index
    rows = index.search(["SEIZURES", "developmental delay", "fits of the brain"], k=3, skip_unique_exact=True)
    seizure, shared, paraphrase = rows
    assert [(c.concept_id, c.score, c.exact) for c in seizure] == [("HP:0001250", 1.0, True)]
    assert {c.concept_id for c in shared[:2]} == {"HP:0001263", "HP:0001249"}  # a shared name is still ranked
    assert len(paraphrase) == 3
    assert spy.calls == [["developmental delay", "fits of the brain"]]
    # without skipping, the same top concept, ranked among k
    full = index.search(["SEIZURES"], k=3)[0]
    assert full[0].concept_id == "HP:0001250" and len(full) == 3


def test_exact_candidates_come_from_the_term_dictionary(spied_index) -> None:
    index, spy = spied_index
    found = index.exact_candidates(["Large kidneys", "developmental delay", "not a name at all"])
    assert [c.concept_id for c in found[0]] == ["HP:0000105"] and found[0][0].matched_text == "Large kidneys"
    assert len(found[1]) == 2 and found[2] == []
    assert spy.calls == [] and index._faiss is None  # neither the model nor FAISS was needed


def test_the_component_links_exact_names_without_the_model(spied_index) -> None:
    import spacy

    index, spy = spied_index
    nlp = spacy.blank("en")
    linker = nlp.add_pipe("concept_linker", config={"assertion": False})
    linker.set_index(index)
    doc = nlp("She had seizures and large kidneys.")
    assert [(e.text, e.kb_id_) for e in doc.ents] == [("seizures", "HP:0001250"), ("large kidneys", "HP:0000105")]
    assert spy.calls == []
    nlp.get_pipe("concept_linker").skip_exact = False
    again = nlp("She had seizures and large kidneys.")
    assert [e.kb_id_ for e in again.ents] == [e.kb_id_ for e in doc.ents] and spy.calls


def _modules_after(argv: list[str]) -> tuple[str, dict[str, bool]]:
    """Run the CLI in a fresh interpreter; its output and which heavy modules it imported."""
    script = ("import sys\nfrom linker.cli import cli\ntry:\n    cli.main(args=" + repr(argv) + ", prog_name='linker')\n"
              "except SystemExit:\n    pass\n"
              "print('MODULES', {m: m in sys.modules for m in ('torch', 'transformers', 'faiss', 'spacy')})")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    head, _, modules = out.stdout.rpartition("MODULES ")
    return head, eval(modules)  # noqa: S307 - our own dict literal


def test_exact_lookup_get_and_info_import_no_model(mini_index_dir: Path) -> None:
    index = str(mini_index_dir)
    out, modules = _modules_after(["lookup", "--index", index, "--json", "Seizures"])
    record = json.loads(out.strip().splitlines()[-1])
    assert record["candidates"][0]["concept_id"] == "HP:0001250" and record["confident"]
    assert not any(modules.values()), modules
    for argv in (["get", "--index", index, "HP:0001275"], ["info", "--index", index]):
        out, modules = _modules_after(argv)
        assert out.strip() and not any(modules.values()), (argv, modules)
    out, modules = _modules_after(["lookup", "--index", index, "--json", "fits of the brain"])
    assert len(json.loads(out.strip().splitlines()[-1])["candidates"]) == 5 and modules["torch"]

