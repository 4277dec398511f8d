"""CTD ``CTD_diseases.tsv`` (MEDIC): names, synonyms, definitions, parents, alt ids (OMIM, DO)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from linker.errors import SourceFormatError
from linker.sources._io import iter_lines
from linker.types import AltId, Concept, Record, Term

CTD_FIELDS = ("DiseaseName", "DiseaseID", "AltDiseaseIDs", "Definition", "ParentIDs", "TreeNumbers",
              "ParentTreeNumbers", "Synonyms", "SlimMappings")


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split("|") if item.strip()]


def read_ctd(path: Path) -> Iterator[Record]:
    for lineno, line in iter_lines(path):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) < 8:
            raise SourceFormatError(
                path, lineno, f"expected {len(CTD_FIELDS)} tab-separated CTD fields ({', '.join(CTD_FIELDS)}), got {len(fields)}"
            )
        name, concept_id = fields[0].strip(), fields[1].strip()
        if not name or not concept_id:
            raise SourceFormatError(path, lineno, "empty DiseaseName or DiseaseID")
        yield Concept(concept_id, name, fields[3].strip() or None, (), tuple(_split(fields[4])))
        yield Term(concept_id, name, "LABEL")
        for synonym in _split(fields[7]):
            yield Term(concept_id, synonym, "EXACT")
        for alt in _split(fields[2]):
            yield AltId(alt, concept_id, "alt_id")
