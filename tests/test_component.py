from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import spacy
from spacy.language import Language

from linker.errors import IndexNotFoundError, LinkerError
from linker.pipeline import doc_mentions, load_pipeline
from linker.types import Candidate

TEXT = ("The girl had seizures and enlarged kidneys. Global developmental delay (GDD) was diagnosed; "
        "GDD is common. She denies fever.")


def annotations(doc: Any) -> list[tuple[Any, ...]]:
    return [(e.start_char, e.end_char, e.label_, e.kb_id_, e._.kb_ents, e._.negated, e._.mention_source)
            for e in doc.ents]


@pytest.fixture(scope="module")
def nlp(mini_index_dir: Path) -> Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("concept_linker", config={"index": str(mini_index_dir)})  # found through the entry point
    nlp.initialize()
    return nlp


class CountingEncoder:
    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dimension = inner, inner.name, inner.dimension
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str], **options: Any) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.encode(texts, **options)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


def test_dictionary_mentions_are_linked_scispacy_style(nlp: Language) -> None:
    doc = nlp(TEXT)
    linked = {e.text: e.kb_id_ for e in doc.ents}
    assert linked == {"seizures": "HP:0001250", "enlarged kidneys": "HP:0000105",
                      "Global developmental delay": "HP:0001263", "GDD": "HP:0001263", "fever": "HP:0001945"}
    seizures = doc.ents[0]
    assert seizures.label_ == "CONCEPT"
    assert seizures._.kb_ents[0] == ("HP:0001250", 1.0)
    assert all(isinstance(cid, str) and isinstance(score, float) for cid, score in seizures._.kb_ents)
    assert [s for _, s in seizures._.kb_ents] == sorted((s for _, s in seizures._.kb_ents), reverse=True)
    best = seizures._.concepts[0]
    assert isinstance(best, Candidate) and best.name == "Seizure" and best.exact


def test_abbreviations_link_through_the_long_form(nlp: Language) -> None:
    doc = nlp(TEXT)
    gdd = [e for e in doc.ents if e.text == "GDD"]
    assert len(gdd) == 2 and {e._.mention_source for e in gdd} == {"abbreviation"}


def test_negation_and_doc_mentions(nlp: Language) -> None:
    doc = nlp(TEXT)
    mentions = {m.text: m for m in doc_mentions(doc)}
    assert mentions["fever"].negated and not mentions["seizures"].negated
    assert mentions["seizures"].concept_id == "HP:0001250" and mentions["seizures"].source == "dictionary"
    assert TEXT[mentions["fever"].start:mentions["fever"].end] == "fever"
    assert mentions["fever"].candidates[0].concept_id == "HP:0001945"


def test_upstream_entities_are_linked_and_keep_their_label(mini_index_dir: Path) -> None:
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PHENOTYPE", "pattern": "trouble sleeping at night"},
                        {"label": "PHENOTYPE", "pattern": "xylophone"}])
    nlp.add_pipe("concept_linker", config={"index": str(mini_index_dir), "sources": ["upstream"]})
    doc = nlp("He has trouble sleeping at night and a xylophone.")
    assert [(e.text, e.label_, e.kb_id_) for e in doc.ents] == [
        ("trouble sleeping at night", "PHENOTYPE", "HP:0002360"), ("xylophone", "PHENOTYPE", "")]
    assert doc.ents[1]._.kb_ents  # below threshold: kept, unlinked, candidates still listed
    nlp.get_pipe("concept_linker").unlinked = "drop"
    assert [e.text for e in nlp("He has trouble sleeping at night and a xylophone.").ents] == [
        "trouble sleeping at night"]


def test_a_name_that_joins_two_upstream_spans_replaces_them_without_the_dictionary_as_a_source(
        mini_index_dir: Path) -> None:
    """A detector that split a name ("Global" + "developmental delay") is joined by it, its entities giving way;
    a single upstream span inside a name ("short" in "short stature") is left alone, as no other dictionary name
    is proposed."""
    def run(longer_wins: bool, sources: tuple[str, ...] = ("upstream",)) -> list[tuple[str, str, str]]:
        nlp = spacy.blank("en")
        nlp.add_pipe("entity_ruler").add_patterns([
            {"label": "PHENOTYPE", "pattern": "Global"}, {"label": "PHENOTYPE", "pattern": "developmental delay"},
            {"label": "PHENOTYPE", "pattern": "short"}])
        nlp.add_pipe("concept_linker", config={"index": str(mini_index_dir), "sources": list(sources),
                                               "longer_wins": longer_wins})
        doc = nlp("Global developmental delay and short stature.")
        return [(e.text, e.label_, e._.mention_source) for e in doc.ents]

    assert run(True) == [("Global developmental delay", "PHENOTYPE", "dictionary"), ("short", "PHENOTYPE", "upstream")]
    assert run(False) == [("Global", "PHENOTYPE", "upstream"), ("developmental delay", "PHENOTYPE", "upstream"),
                          ("short", "PHENOTYPE", "upstream")]
    # with the dictionary as a source, any longer name holding a detected span replaces its entity
    assert run(True, ("upstream", "dictionary")) == [("Global developmental delay", "PHENOTYPE", "dictionary"),
                                                     ("short stature", "PHENOTYPE", "dictionary")]


def test_dense_finds_phrasings_no_name_spells_out(mini_index_dir: Path) -> None:
    nlp = load_pipeline(mini_index_dir, sources=["dense"], dense_threshold=0.85)
    doc = nlp("On ultrasound her kidneys were enlarged.")
    assert [(e.text, e.kb_id_, e._.mention_source) for e in doc.ents] == [
        ("kidneys were enlarged", "HP:0000105", "dense")]
    assert doc.ents[0]._.kb_ents[0][1] >= 0.85


def test_sources_combine_without_overlaps(mini_index_dir: Path) -> None:
    nlp = load_pipeline(mini_index_dir, sources=["dictionary", "dense"], dense_threshold=0.85)
    doc = nlp("Seizures. On ultrasound her kidneys were enlarged.")
    assert [(e.text, e._.mention_source) for e in doc.ents] == [("Seizures", "dictionary"),
                                                               ("kidneys were enlarged", "dense")]


def test_pipe_embeds_each_distinct_string_once_per_batch(nlp: Language, mini_index_dir: Path, encoder: Any) -> None:
    from linker.index import ConceptIndex

    counting = CountingEncoder(encoder)
    batch_nlp = load_pipeline(mini_index_dir, skip_exact=False)  # every mention embedded (test_skip_work: skipped)
    batch_nlp.get_pipe("concept_linker").set_index(ConceptIndex.load(mini_index_dir, encoder=counting))
    texts = ["Seizures and fever.", "fever, seizures, SEIZURES", "No fever.", "Nothing to see."]
    docs = list(batch_nlp.pipe(texts, batch_size=10))
    assert len(counting.calls) == 1
    (call,) = counting.calls
    assert sorted(call) == sorted(set(call)) == ["Fever", "Seizure"]
    assert [[e.kb_id_ for e in d.ents] for d in docs] == [["HP:0001250", "HP:0001945"],
                                                         ["HP:0001945", "HP:0001250", "HP:0001250"],
                                                         ["HP:0001945"], []]
    single = load_pipeline(mini_index_dir, skip_exact=False)
    assert [annotations(d) for d in docs] == [annotations(single(t)) for t in texts]
    list(batch_nlp.pipe(texts, batch_size=2))
    assert len(counting.calls) == 1  # the index's query cache: strings seen in an earlier batch are not embedded again
    batch_nlp.get_pipe("concept_linker").index.embedding_cache.clear()
    list(batch_nlp.pipe(texts, batch_size=2))
    # from a cold cache: the first batch embeds Seizure and Fever, the second (only "fever") nothing new
    assert sorted(counting.calls[1]) == ["Fever", "Seizure"]
    assert len(counting.calls) == 2


def test_docs_made_with_their_text_annotate_as_nlp_pipe_does(nlp: Language) -> None:
    """pipe_texts hands the component the input text instead of spaCy's joined tokens: same text, same links."""
    from linker.extensions import TEXT_KEY, doc_text, pipe_texts

    texts = [TEXT, "  Seizures\t\tand  fever  ", "Sjögren's syndrome; no seizures.\n\n", "", "\u00a0GDD\u2009fever"]
    kept = list(pipe_texts(nlp, texts))
    assert [doc.user_data[TEXT_KEY] for doc in kept] == texts
    assert [doc_text(doc) for doc in kept] == [doc.text for doc in kept] == texts
    assert [annotations(doc) for doc in kept] == [annotations(doc) for doc in nlp.pipe(texts)]
    assert annotations(kept[0])  # the comparison is over linked mentions, not empty lists
    assert doc_text(nlp.make_doc("no kept text")) == "no kept text"
    other = nlp.make_doc("a text of another length")
    other.user_data[TEXT_KEY] = "stale"
    assert doc_text(other) == "a text of another length"


def test_to_disk_and_spacy_load_round_trip(nlp: Language, tmp_path: Path) -> None:
    nlp.to_disk(tmp_path / "pipeline")
    assert (tmp_path / "pipeline" / "concept_linker" / "linker.json").exists()
    loaded = spacy.load(tmp_path / "pipeline")
    assert annotations(loaded(TEXT)) == annotations(nlp(TEXT))


def test_round_trip_with_a_copied_index(mini_index_dir: Path, tmp_path: Path) -> None:
    nlp = load_pipeline(mini_index_dir, copy_index=True)
    nlp.to_disk(tmp_path / "pipeline")
    assert (tmp_path / "pipeline" / "concept_linker" / "index" / "meta.json").exists()
    loaded = spacy.load(tmp_path / "pipeline")
    assert Path(loaded.get_pipe("concept_linker").index.path).parent == tmp_path / "pipeline" / "concept_linker"
    assert annotations(loaded(TEXT)) == annotations(nlp(TEXT))


def test_a_moved_index_is_reported(nlp: Language, tmp_path: Path) -> None:
    nlp.to_disk(tmp_path / "pipeline")
    settings = tmp_path / "pipeline" / "concept_linker" / "linker.json"
    settings.write_text(settings.read_text().replace(str(Path(nlp.get_pipe("concept_linker").index.path).resolve()),
                                                     str(tmp_path / "gone")))
    with pytest.raises(IndexNotFoundError, match="copy_index=True"):
        spacy.load(tmp_path / "pipeline")


def test_docs_survive_serialisation(nlp: Language) -> None:
    from spacy.tokens import Doc

    doc = nlp(TEXT)
    again = Doc(nlp.vocab).from_bytes(doc.to_bytes())
    assert annotations(again) == annotations(doc)
    assert again.ents[0]._.concepts == doc.ents[0]._.concepts


def test_two_processes_give_the_same_annotations(nlp: Language) -> None:
    texts = [TEXT, "No seizures.", "", "Anaemia and fatigue."] * 2
    single = [annotations(d) for d in nlp.pipe(texts)]
    double = [annotations(d) for d in nlp.pipe(texts, n_process=2, batch_size=2)]
    assert double == single and single[1][0][3] == "HP:0001250"


@pytest.mark.parametrize("text", ["", "   \n\t", "\u0000\ufeff\u200b", "😀🧬 ???", "Der Patient hat Fieber und Krampfanfälle.",
                                  "Le patient présente une glomérulopathie.", "患者有癫痫发作", "a" * 5000,
                                  "((((((", "Seizure" * 50, "(GDD)"])
def test_odd_inputs_do_not_crash(nlp: Language, text: str) -> None:
    doc = nlp(text)
    assert doc.text == text
    assert all(e.kb_id_ == "" or e.kb_id_.startswith("HP:") for e in doc.ents)


def test_a_one_megabyte_document(nlp: Language) -> None:
    sentence = "The child had seizures and no fever, then anaemia (iron deficiency) and fatigue. "
    text = sentence * (1_000_000 // len(sentence))
    doc = nlp(text)
    assert len(doc.ents) == 4 * text.count("The child")
    assert doc.ents[-3]._.negated


def test_filters_by_subtree_root(mini_index_dir: Path) -> None:
    nlp = load_pipeline(mini_index_dir, roots=["HP:0000077"])  # abnormality of the kidney
    doc = nlp("Seizures and enlarged kidneys.")
    assert [(e.text, e.kb_id_) for e in doc.ents] == [("enlarged kidneys", "HP:0000105")]
    assert all(cid in {"HP:0000105", "HP:0000077", "HP:0100820"} for cid, _ in doc.ents[0]._.kb_ents)


def test_bad_settings_name_the_value(mini_index_dir: Path) -> None:
    with pytest.raises(LinkerError, match="'ner'"):
        load_pipeline(mini_index_dir, sources=["ner"])
    with pytest.raises(LinkerError, match="unlinked='maybe'"):
        load_pipeline(mini_index_dir, unlinked="maybe")


def test_the_component_pickles_without_its_index(nlp: Language) -> None:
    import pickle

    linker = nlp.get_pipe("concept_linker")
    _ = linker.index
    copy = pickle.loads(pickle.dumps(linker))
    assert copy._index is None and copy.index_path == linker.index_path
    assert annotations(copy(nlp.make_doc(TEXT))) == annotations(nlp(TEXT))
