"""One sense per discourse: a confidently linked text linked alike where it occurs again in the document."""

from __future__ import annotations

import spacy

from linker.linking.discourse import propagate
from linker.linking.entities import write_entities
from linker.mentions.proposal import ABBREVIATION, UPSTREAM, Proposal
from linker.types import Candidate

MYOPATHY = [Candidate("D009135", "Muscular Diseases", "myopathy", 0.95, False)]
LOW = [Candidate("D009135", "Muscular Diseases", "statin myopathy", 0.7, False)]


def _at(text: str, part: str, nth: int = 0) -> tuple[int, int]:
    start = -1
    for _ in range(nth + 1):
        start = text.index(part, start + 1)
    return start, start + len(part)


def test_a_linked_text_is_linked_where_it_occurs_again_and_an_unlinked_span_over_it_gives_way() -> None:
    text = "Myopathy was seen. Statin myopathy and myopathy-free controls. No myopathy later."
    first = Proposal(*_at(text, "Myopathy"), UPSTREAM, "Myopathy")
    longer = Proposal(*_at(text, "Statin myopathy"), UPSTREAM, "Statin myopathy")
    linked, replaced = propagate(text, [(first, MYOPATHY), (longer, LOW)], {}, threshold=0.9)
    spans = [(p.start, p.end) for p, _ in linked]
    assert spans == [_at(text, "Myopathy"), _at(text, "myopathy", 0), _at(text, "myopathy", 2)]
    assert replaced == {(longer.start, longer.end)}
    assert all(c is MYOPATHY for _, c in linked)  # "myopathy-free" is no whole word: left alone


def test_nothing_is_propagated_from_an_unconfident_link_short_text_or_short_form_or_into_a_linked_span() -> None:
    text = "AF and atrial fibrillation; af again. Pain, pain. Statin myopathy; myopathy."
    af = Proposal(0, 2, ABBREVIATION, "AF")
    pain = Proposal(*_at(text, "Pain"), UPSTREAM, "Pain")
    statin = Proposal(*_at(text, "Statin myopathy"), UPSTREAM, "Statin myopathy")
    inner = Proposal(*_at(text, "myopathy", 1), UPSTREAM, "myopathy")
    sure = [Candidate("X", "X", "x", 1.0, True)]
    given = [(af, sure), (pain, LOW), (statin, sure), (inner, LOW)]
    linked, replaced = propagate(text, given, {}, threshold=0.9)
    assert linked == given and not replaced  # no source: a short form, unconfident links; "Statin myopathy" occurs once
    linked, _ = propagate(text, [(Proposal(*_at(text, "Pain"), UPSTREAM, "Pain"), sure)], {}, threshold=0.9,
                          min_chars=5)
    assert len(linked) == 1  # "Pain" is shorter than min_chars


def test_capitals_match_only_capitals() -> None:
    text = "WAS was diagnosed; WAS recurs."
    was = Proposal(0, 3, UPSTREAM, "WAS")
    sure = [Candidate("D014923", "Wiskott-Aldrich Syndrome", "WAS", 1.0, True)]
    linked, _ = propagate(text, [(was, sure)], {}, threshold=0.9, min_chars=3)
    assert [(p.start, p.end) for p, _ in linked] == [(0, 3), _at(text, "WAS", 1)]


def test_the_replaced_upstream_entity_is_not_kept_beside_the_new_mention() -> None:
    nlp = spacy.blank("en")
    text = "Myopathy was seen. Statin myopathy followed."
    doc = nlp(text)
    doc.ents = [doc.char_span(*_at(text, "Myopathy"), label="Disease"),
                doc.char_span(*_at(text, "Statin myopathy"), label="Disease")]
    first = Proposal(*_at(text, "Myopathy"), UPSTREAM, "Myopathy", "Disease")
    longer = Proposal(*_at(text, "Statin myopathy"), UPSTREAM, "Statin myopathy", "Disease")
    linked, replaced = propagate(text, [(first, MYOPATHY), (longer, LOW)], {}, threshold=0.9)
    write_entities(doc, text, linked, {}, threshold=0.9, keep_unlinked=True, overwrite=False, label="CONCEPT",
                   assertion=False, replaced=replaced)
    assert [(e.text, e.kb_id_) for e in doc.ents] == [("Myopathy", "D009135"), ("myopathy", "D009135")]


def test_a_composite_linked_through_its_conjuncts_is_confident_and_does_not_give_way() -> None:
    text = "Breast and ovarian cancer; ovarian cancer again."
    composite = Proposal(*_at(text, "Breast and ovarian cancer"), UPSTREAM, "Breast and ovarian cancer")
    inner = Proposal(*_at(text, "ovarian cancer", 1), UPSTREAM, "ovarian cancer")
    parts = {"Breast and ovarian cancer": [Candidate("B", "Breast Neoplasms", "breast cancer", 0.95, False),
                                           Candidate("O", "Ovarian Neoplasms", "ovarian cancer", 1.0, True)]}
    sure = [Candidate("O", "Ovarian Neoplasms", "ovarian cancer", 1.0, True)]
    linked, replaced = propagate(text, [(composite, LOW), (inner, sure)], parts, threshold=0.9)
    assert not replaced and [(p.start, p.end) for p, _ in linked] == [(composite.start, composite.end),
                                                                      (inner.start, inner.end)]
