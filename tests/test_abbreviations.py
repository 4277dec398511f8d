from __future__ import annotations

from linker.abbreviations import find_abbreviations, find_definitions


def test_long_form_then_short_form_and_every_later_use() -> None:
    text = "Children with spinal muscular atrophy (SMA) were studied. SMA is rare; SMAD4 is a gene."
    found = find_abbreviations(text)
    assert [(a.short, text[a.start:a.end], a.long, a.definition) for a in found] == [
        ("SMA", "SMA", "spinal muscular atrophy", True),
        ("SMA", "SMA", "spinal muscular atrophy", False),
    ]
    assert text[found[0].long_start:found[0].long_end] == "spinal muscular atrophy"


def test_long_form_starts_at_the_first_letter_of_the_short_form() -> None:
    text = "In people with red-cell glucose-6-phosphate dehydrogenase (G6PD) deficiency, G6PD is low."
    (definition,) = find_definitions(text)
    assert definition.long == "glucose-6-phosphate dehydrogenase"


def test_extra_text_after_the_short_form_in_parentheses() -> None:
    text = "Duchenne muscular dystrophy (DMD; OMIM 310200) affects boys."
    (definition,) = find_definitions(text)
    assert (definition.short, definition.long) == ("DMD", "Duchenne muscular dystrophy")


def test_short_form_then_long_form() -> None:
    text = "Mutations in APC (adenomatous polyposis coli) cause polyps."
    (definition,) = find_definitions(text)
    assert (definition.short, definition.long) == ("APC", "adenomatous polyposis coli")


def test_parentheses_that_define_nothing() -> None:
    for text in ("The difference was significant (p < 0.05).", "as described (see above)", "a (b) c",
                 "fever (38.5 C) was noted", "", "()", "(((", "Seizures (ABC) were seen."):
        assert find_abbreviations(text) == []


def test_case_and_word_boundaries_are_respected() -> None:
    text = "Global developmental delay (GDD) occurs. gdd and GDDs and GDD-like and GDD."
    uses = [text[a.start:a.end] for a in find_abbreviations(text)]
    assert uses == ["GDD", "GDD"]
