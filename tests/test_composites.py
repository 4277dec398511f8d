"""Composite mentions: readings of a coordinated span and the choice between them."""

from __future__ import annotations

import pytest

from linker.linking.composites import choose, readings


@pytest.mark.parametrize(("text", "expected"), [
    ("breast and ovarian cancer", ("breast cancer", "ovarian cancer")),
    ("breast and/or ovarian cancer", ("breast cancer", "ovarian cancer")),
    ("breast/ovarian cancer", ("breast cancer", "ovarian cancer")),
    ("Duchenne and Becker muscular dystrophy", ("Duchenne muscular dystrophy", "Becker muscular dystrophy")),
    ("colorectal adenomas and carcinoma", ("colorectal adenomas", "colorectal carcinoma")),
    ("deficiency of C5, C6, or C7", ("deficiency of C5", "deficiency of C6", "deficiency of C7")),
    ("B- and T-cell lymphomas", ("B-cell lymphomas", "T-cell lymphomas")),
])
def test_readings_spell_out_the_shared_part(text: str, expected: tuple[str, ...]) -> None:
    assert expected in readings(text)


def test_plain_parts_are_a_reading_too() -> None:
    assert ("ataxia", "muscular dystrophy") in readings("ataxia and muscular dystrophy")


def test_no_coordinator_no_reading() -> None:
    assert readings("hemophilia A") == []
    assert readings("Wiskott-Aldrich syndrome") == []


def test_choose_takes_the_reading_whose_weakest_conjunct_is_best() -> None:
    scores = {"breast and ovarian cancer": 0.80, "breast cancer": 1.0, "ovarian cancer": 1.0, "breast": 0.6}
    options = readings("breast and ovarian cancer")
    assert choose("breast and ovarian cancer", options, lambda q: scores.get(q, 0.0)) == \
        ("breast cancer", "ovarian cancer")


def test_choose_keeps_the_whole_when_it_matches_better() -> None:
    scores = {"hand, foot and mouth disease": 1.0, "hand": 0.5, "foot": 0.5, "mouth disease": 0.9}
    text = "hand, foot and mouth disease"
    assert choose(text, readings(text), lambda q: scores.get(q, 0.0)) is None


def test_margin_raises_the_bar() -> None:
    scores = {"a and b c": 0.80, "a c": 0.84, "b c": 0.85}
    options = readings("a and b c")
    assert choose("a and b c", options, lambda q: scores.get(q, 0.0)) == ("a c", "b c")
    assert choose("a and b c", options, lambda q: scores.get(q, 0.0), margin=0.05) is None
