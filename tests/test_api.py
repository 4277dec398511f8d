from __future__ import annotations

from pathlib import Path

import linker


def test_functional_facade(mini_index_dir: Path) -> None:
    single = linker.lookup("Pyrexia", k=2, index=mini_index_dir)
    assert single[0].concept_id == "HP:0001945" and len(single) == 2
    batch = linker.lookup(["Pyrexia", "Nephromegaly"], k=1, index=mini_index_dir)
    assert [r[0].concept_id for r in batch] == ["HP:0001945", "HP:0000105"]
    assert linker.get("HP:0001275", index=mini_index_dir).concept.name == "Seizure"
    assert linker.ConceptIndex.__name__ == "ConceptIndex"
