"""Arbitration between upstream (learned), dictionary and dense spans."""

from __future__ import annotations

from linker.mentions import DENSE, DICTIONARY, UPSTREAM, Proposal
from linker.mentions.arbitration import arbitrate

TEXT = "sensorineural deafness and colorectal neoplasia"


def _spans(chosen: list[Proposal]) -> list[tuple[str, str]]:
    return [(TEXT[p.start:p.end], p.source) for p in chosen]


def _run(props: list[Proposal], longer_wins: bool = True) -> list[tuple[str, str]]:
    return _spans(arbitrate(props, lambda q: 0.9, threshold=0.75, dense_threshold=0.95, longer_wins=longer_wins))


def test_a_longer_dictionary_name_replaces_a_learned_span_inside_it() -> None:
    learned = Proposal(14, 22, UPSTREAM, "deafness", "Disease")
    name = Proposal(0, 22, DICTIONARY, "Sensorineural deafness")
    assert _run([learned, name]) == [("sensorineural deafness", DICTIONARY)]
    chosen = arbitrate([learned, name], lambda q: 0.9, threshold=0.75, dense_threshold=0.95)
    assert chosen[0].label == "Disease"  # the detector's label stays
    assert _run([learned, name], longer_wins=False) == [("deafness", UPSTREAM)]


def test_a_learned_span_keeps_the_generic_name_inside_it() -> None:
    learned = Proposal(27, 47, UPSTREAM, "colorectal neoplasia", "Disease")
    name = Proposal(38, 47, DICTIONARY, "Neoplasia")
    assert _run([learned, name]) == [("colorectal neoplasia", UPSTREAM)]


def test_partial_overlap_keeps_the_learned_span() -> None:
    learned = Proposal(14, 37, UPSTREAM, "deafness and colorectal", "Disease")
    name = Proposal(27, 47, DICTIONARY, "colorectal neoplasia")
    assert _run([learned, name]) == [("deafness and colorectal", UPSTREAM)]


def test_a_name_below_the_threshold_never_replaces() -> None:
    learned = Proposal(14, 22, UPSTREAM, "deafness", "Disease")
    name = Proposal(0, 22, DICTIONARY, "Sensorineural deafness")
    chosen = arbitrate([learned, name], lambda q: 0.5 if q.startswith("Sensori") else 0.9, threshold=0.75,
                       dense_threshold=0.95)
    assert _spans(chosen) == [("deafness", UPSTREAM)]


def test_dense_spans_fill_only_free_text() -> None:
    name = Proposal(0, 22, DICTIONARY, "Sensorineural deafness")
    dense_inside = Proposal(14, 22, DENSE, "deafness")
    dense_free = Proposal(27, 47, DENSE, "colorectal neoplasia")
    chosen = arbitrate([name, dense_inside, dense_free], lambda q: 0.99, threshold=0.75, dense_threshold=0.95)
    assert _spans(chosen) == [("sensorineural deafness", DICTIONARY), ("colorectal neoplasia", DENSE)]
