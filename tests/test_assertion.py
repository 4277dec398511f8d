from __future__ import annotations

import pytest

from linker.assertion import Assertion, assert_spans


def flags(text: str, phrase: str) -> Assertion:
    start = text.index(phrase)
    return assert_spans(text, [(start, start + len(phrase))])[0]


@pytest.mark.parametrize("text, phrase", [
    ("The patient denies fever and chills.", "chills"),
    ("No seizures were observed.", "seizures"),
    ("She was negative for anemia.", "anemia"),
    ("Breast cancer was ruled out.", "Breast cancer"),
    ("There is no evidence of ataxia.", "ataxia"),
    ("Without diarrhea.", "diarrhea"),
])
def test_negated(text: str, phrase: str) -> None:
    assert flags(text, phrase).negated


@pytest.mark.parametrize("text, phrase", [
    ("She has ataxia.", "ataxia"),
    ("There was no increase in seizures.", "seizures"),  # pseudo-negation
    ("No cough, but fever is present.", "fever"),  # termination word
    ("No cough. Fever persists.", "Fever"),  # sentence break
    ("No pain was reported for the first eleven weeks of the long study period and then anemia.", "anemia"),
])
def test_not_negated(text: str, phrase: str) -> None:
    assert not flags(text, phrase).negated


def test_family_history_and_the_other_flags() -> None:
    text = "Family history of breast cancer. He has a history of anemia. Return if fever develops."
    assert flags(text, "breast cancer") == Assertion(family=True)
    assert flags(text, "anemia") == Assertion(historical=True)
    assert flags(text, "fever") == Assertion(hypothetical=True)
    assert flags("Her mother had colon cancer.", "colon cancer").family


def test_a_cue_inside_the_mention_does_not_negate_it() -> None:
    assert not flags("Absent thumb was seen.", "Absent thumb").negated


def test_no_spans_and_empty_text() -> None:
    assert assert_spans("", []) == []
    assert assert_spans("   ", [(0, 1)]) == [Assertion()]
