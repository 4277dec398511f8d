"""A detected span its detector is unsure of links only by an exact name or the mention memory
(``detector_confidence``); spans of other NERs, which carry no confidence, link as before."""

from __future__ import annotations

from pathlib import Path

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc

from linker.errors import LinkerError
from linker.extensions import CONFIDENCE_ATTR
from linker.linking.discourse import propagate
from linker.linking.entities import is_linked
from linker.mentions.arbitration import arbitrate
from linker.mentions.proposal import ABBREVIATION, UPSTREAM, Proposal, bar
from linker.pipeline import load_pipeline
from linker.types import Candidate

CLOSE = [Candidate("D1", "Thromboembolism", "thromboembolic disease", 0.88, False)]
EXACT = [Candidate("D2", "Hypothyroidism", "hypothyroidism", 1.0, True)]


def _span(confidence: float | None, start: int = 0, end: int = 10) -> Proposal:
    return Proposal(start, end, UPSTREAM, "q", confidence=confidence)


def test_the_bar_is_the_threshold_unless_the_detector_is_unsure() -> None:
    assert bar(_span(0.5), 0.8, 0.9) == 1.0
    assert bar(_span(0.95), 0.8, 0.9) == 0.8
    assert bar(_span(None), 0.8, 0.9) == 0.8  # another NER's span: no confidence, the threshold
    assert bar(_span(0.0), 0.8, 0.0) == 0.8  # 0 treats every span alike
    assert bar(Proposal(0, 5, "dictionary", "q"), 0.8, 0.9) == 0.8


def test_an_unsure_span_links_by_exact_name_only() -> None:
    assert is_linked(_span(0.99), CLOSE, {}, 0.8, 0.9)
    assert not is_linked(_span(0.5), CLOSE, {}, 0.8, 0.9)
    assert is_linked(_span(0.5), EXACT, {}, 0.8, 0.9)
    assert is_linked(_span(0.5), CLOSE, {}, 0.8, 0.0)
    # a composite is linked when every conjunct reaches the span's bar
    assert not is_linked(_span(0.5), CLOSE, {"q": CLOSE + EXACT}, 0.8, 0.9)
    assert is_linked(_span(0.99), CLOSE, {"q": CLOSE + EXACT}, 0.8, 0.9)


def test_a_short_form_follows_its_long_form_only_when_that_will_be_linked() -> None:
    text = "thromboembolic disease (TED) ... TED"
    short = Proposal(33, 36, ABBREVIATION, text[:22], anchor=(0, 22))

    def chosen(confidence: float, min_confidence: float) -> list[tuple[int, int]]:
        props = [Proposal(0, 22, UPSTREAM, text[:22], confidence=confidence), short]
        return [(p.start, p.end) for p in arbitrate(props, lambda q: 0.88, threshold=0.8, dense_threshold=0.95,
                                                    min_confidence=min_confidence)]

    assert chosen(0.5, 0.9) == [(0, 22)]
    assert chosen(0.99, 0.9) == [(0, 22), (33, 36)]
    assert chosen(0.5, 0.0) == [(0, 22), (33, 36)]


def test_discourse_propagates_only_what_the_span_s_bar_links() -> None:
    text = "Thromboembolic disease was seen; later thromboembolic disease again."
    first = Proposal(0, 22, UPSTREAM, text[:22], confidence=0.5)
    linked, replaced = propagate(text, [(first, CLOSE)], {}, threshold=0.8, min_confidence=0.9)
    assert [(p.start, p.end) for p, _ in linked] == [(0, 22)] and not replaced
    sure = Proposal(0, 22, UPSTREAM, text[:22], confidence=0.99)
    linked, _ = propagate(text, [(sure, CLOSE)], {}, threshold=0.8, min_confidence=0.9)
    assert len(linked) == 2


@Language.component("test_confidence_setter")
def _set_confidence(doc: Doc) -> Doc:
    for ent in doc.ents:
        ent._.set(CONFIDENCE_ATTR, doc.user_data.get("confidence"))
    return doc


def _linked(mini_index_dir: Path, confidence: float | None, detector_confidence: float) -> dict[str, str]:
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "PHENOTYPE", "pattern": "trouble sleeping at night"},
                                               {"label": "PHENOTYPE", "pattern": "short stature"}])
    nlp.add_pipe("test_confidence_setter")
    nlp.add_pipe("concept_linker", config={"index": str(mini_index_dir), "sources": ["upstream"], "threshold": 0.5,
                                           "detector_confidence": detector_confidence})
    doc = nlp.make_doc("He has trouble sleeping at night and short stature.")
    doc.user_data["confidence"] = confidence
    doc = nlp(doc)
    assert doc.ents[0]._.kb_ents[0][1] < 1.0  # a paraphrase, not a name of the index
    return {e.text: e.kb_id_ for e in doc.ents}


def test_the_component_links_an_unsure_detected_span_by_exact_name_only(mini_index_dir: Path) -> None:
    both = {"trouble sleeping at night": "HP:0002360", "short stature": "HP:0004322"}
    assert _linked(mini_index_dir, 0.99, 0.9) == both
    assert _linked(mini_index_dir, 0.5, 0.9) == {**both, "trouble sleeping at night": ""}
    assert _linked(mini_index_dir, 0.5, 0.0) == both  # the default: every span alike
    assert _linked(mini_index_dir, None, 0.9) == both  # another NER's spans carry no confidence


def test_a_confidence_setting_out_of_range_is_a_clear_error(mini_index_dir: Path) -> None:
    with pytest.raises(LinkerError, match="detector_confidence=2: must lie between 0 and 1"):
        load_pipeline(mini_index_dir, detector_confidence=2)
