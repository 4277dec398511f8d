from __future__ import annotations

import pytest
import spacy
from spacy.tokens import Doc

from linker.mentions import DICTIONARY, DictionaryMatcher, dense_spans, stem, upstream_proposals, word_tokens

NAMES = ["Seizure", "Enlarged kidney", "Spinal muscular atrophy", "SMA", "All", "Other", "Sjögren syndrome",
         "Cafe-au-lait spots", "Glucose-6-phosphate dehydrogenase deficiency", "Atrophy", "Muscular atrophy", "Gap"]


def found(text: str, names: list[str] = NAMES, **options: int) -> list[tuple[str, str]]:
    matcher = DictionaryMatcher(names, **options)
    return [(text[p.start:p.end], p.query) for p in matcher.find(text)]


def test_normalisation_case_accents_hyphens_possessives_and_plurals() -> None:
    text = ("Enlarged kidneys, SEIZURES, café au lait spots, Sjogren's syndrome and "
            "glucose 6-phosphate-dehydrogenase deficiencies.")
    assert found(text) == [("Enlarged kidneys", "Enlarged kidney"), ("SEIZURES", "Seizure"),
                           ("café au lait spots", "Cafe-au-lait spots"), ("Sjogren's syndrome", "Sjögren syndrome"),
                           ("glucose 6-phosphate-dehydrogenase deficiencies",
                            "Glucose-6-phosphate dehydrogenase deficiency")]


def test_longest_match_wins() -> None:
    assert found("signs of spinal muscular atrophy") == [("spinal muscular atrophy", "Spinal muscular atrophy")]
    assert found("muscular atrophy and atrophy") == [("muscular atrophy", "Muscular atrophy"), ("atrophy", "Atrophy")]


def test_guards_against_stop_words_and_short_names() -> None:
    assert found("All other patients") == []
    assert found("the sma gap") == []  # one-word names shorter than min_chars
    assert found("the sma", min_chars=3) == [("sma", "SMA")]
    assert found("the SMA GAP") == [("SMA", "SMA"), ("GAP", "Gap")]  # acronyms match as written ...
    assert found("the SMA GAP", acronyms=False) == []  # ... or only through a definition in the text
    assert found("SEIZURES") == [("SEIZURES", "Seizure")]  # a shouted word is no acronym
    assert DictionaryMatcher(["Disease", "Syndrome", "Fatal disease"]).find("a disease, fatal diseases") == \
        DictionaryMatcher(["Fatal disease"]).find("a disease, fatal diseases")  # generic one-word names


def test_a_name_does_not_run_across_punctuation() -> None:
    assert found("enlarged. Kidney") == []
    assert found("enlarged, kidney") == []


def test_odd_text_gives_no_match_and_no_error() -> None:
    for text in ("", " ", "\u0000\ufeff", "😀 seizure 😀", "Krampfanfall und Fieber", "ｓｅｉｚｕｒｅ"):
        matches = found(text)
        assert all(query == "Seizure" for _, query in matches)
    assert found("ｓｅｉｚｕｒｅ") == [("ｓｅｉｚｕｒｅ", "Seizure")]  # NFKD folds full-width letters


def test_stem_and_word_tokens() -> None:
    assert [stem(w) for w in ("kidneys", "deficiencies", "ataxias", "illness", "virus", "abscesses")] == \
        ["kidney", "deficiency", "ataxia", "illness", "virus", "abscess"]
    assert [stem(w) for w in ("tumours", "anaemia", "oedema", "haemorrhage", "hour", "toes")] == \
        ["tumor", "anemia", "edema", "hemorrhage", "hour", "toe"]
    assert [t.key for t in word_tokens("Sjögren's")] == ["sjogren"]


def test_dense_spans_are_ngrams_between_punctuation_and_clause_words() -> None:
    nlp = spacy.blank("en")
    doc = nlp("Her kidneys were enlarged, and she had a fever.")
    spans = {doc.text[s:e] for s, e in dense_spans(doc, max_words=4)}
    assert "kidneys were enlarged" in spans and "Her kidneys" not in spans  # no stop word at the edges
    assert not any("," in s or " and " in s for s in spans)
    vocabulary = frozenset({"kidney"})
    assert {doc.text[s:e] for s, e in dense_spans(doc, vocabulary=vocabulary)} == \
        {"kidneys", "kidneys were enlarged"}
    assert len(dense_spans(doc, limit=2)) == 2


def test_dense_spans_use_noun_chunks_when_parsed() -> None:
    nlp = spacy.blank("en")
    doc = Doc(nlp.vocab, words=["The", "enlarged", "kidneys", "hurt"], pos=["DET", "ADJ", "NOUN", "VERB"],
              heads=[2, 2, 3, 3], deps=["det", "amod", "nsubj", "ROOT"])
    assert [doc.text[s:e] for s, e in dense_spans(doc)] == ["enlarged kidneys"]


def test_upstream_proposals_keep_labels() -> None:
    nlp = spacy.blank("en")
    doc = nlp("fever today")
    doc.ents = [doc.char_span(0, 5, label="DISEASE")]
    (proposal,) = upstream_proposals(doc)
    assert (proposal.start, proposal.end, proposal.label, proposal.query) == (0, 5, "DISEASE", "fever")
    assert DictionaryMatcher(["fever"]).find(doc.text)[0].source == DICTIONARY


def test_inverted_mesh_names_are_found_in_natural_order() -> None:
    assert found("hemolytic anemia and anemia, hemolytic", ["Anemia, Hemolytic"]) == [
        ("hemolytic anemia", "Anemia, Hemolytic")]  # the comma form is not read across the comma


def test_leading_modifiers_and_coordinated_heads_join_the_mention() -> None:
    names = ["Ovarian cancer", "Breast cancer", "Cataract"]
    assert found("congenital bilateral cataracts", names) == [("congenital bilateral cataracts", "Cataract")]
    assert found("breast and ovarian cancer", names) == [("breast and ovarian cancer", "Ovarian cancer")]
    assert found("breast and/or ovarian cancer", names) == [("breast and/or ovarian cancer", "Ovarian cancer")]
    assert found("lung and ovarian cancer", names) == [("ovarian cancer", "Ovarian cancer")]
    assert found("breast cancer and ovarian cancer", names) == [("breast cancer", "Breast cancer"),
                                                               ("ovarian cancer", "Ovarian cancer")]
    assert DictionaryMatcher(names, modifiers=()).find("congenital cataract")[0].start == 11


def _tables(matcher: DictionaryMatcher) -> tuple:
    return (dict(matcher.keys), set(matcher.prefixes), matcher.max_words, matcher.vocabulary, matcher.min_chars,
            matcher.acronyms)


def _entries(folder) -> list:
    return sorted(path.name.split(".")[0] for path in folder.glob("*.json"))


CACHED_NAMES = [*NAMES, "Anemia, Hemolytic", "Breast cancer", "Ovarian cancer", "Café-au-lait macules"]
CACHED_TEXT = "SMA, hemolytic anemia, breast and ovarian cancer, cafe au lait macules and SEIZURES in all of them."


def test_a_cached_matcher_is_the_matcher_built_and_is_not_built_again(tmp_path, monkeypatch) -> None:
    built = DictionaryMatcher(CACHED_NAMES, min_chars=5, acronyms=False)
    first = DictionaryMatcher.cached(CACHED_NAMES, cache_dir=tmp_path, min_chars=5, acronyms=False)
    assert len(_entries(tmp_path)) == 1 and not list(tmp_path.glob("*.tmp"))
    monkeypatch.setattr(DictionaryMatcher, "_add", lambda *a: pytest.fail("tables built again"))
    again = DictionaryMatcher.cached(CACHED_NAMES, cache_dir=tmp_path, min_chars=5, acronyms=False)
    assert _tables(first) == _tables(again) == _tables(built)
    assert again.find(CACHED_TEXT) == built.find(CACHED_TEXT) and len(built.find(CACHED_TEXT)) == 4


def test_large_tables_are_searched_in_the_mapped_tries_with_the_same_matches(tmp_path, monkeypatch) -> None:
    from linker.mentions import matcher_cache

    monkeypatch.setattr(matcher_cache, "IN_MEMORY_KEYS", 3)  # "large" from four keys on
    built = DictionaryMatcher(CACHED_NAMES)
    for _ in range(2):  # built then written and mapped, then mapped from the cache
        mapped = DictionaryMatcher.cached(CACHED_NAMES, cache_dir=tmp_path)
        assert isinstance(mapped.keys, matcher_cache.TrieKeys) and not isinstance(mapped.prefixes, set)
        assert mapped.find(CACHED_TEXT) == built.find(CACHED_TEXT)
        assert dict(mapped.keys) == built.keys and set(mapped.prefixes) == built.prefixes
        assert mapped.vocabulary == built.vocabulary and mapped.max_words == built.max_words
        assert "spinal muscular" in mapped.prefixes and "zzz" not in mapped.keys
        with pytest.raises(KeyError):
            mapped.keys["zzz"]


def test_other_names_or_options_that_shape_the_tables_are_other_entries(tmp_path) -> None:
    DictionaryMatcher.cached(NAMES, cache_dir=tmp_path)
    DictionaryMatcher.cached(NAMES, cache_dir=tmp_path, acronyms=False)  # no effect on the tables: same entry
    assert len(_entries(tmp_path)) == 1
    short = DictionaryMatcher.cached(NAMES, cache_dir=tmp_path, max_words=2)
    other = DictionaryMatcher.cached(NAMES[::-1], cache_dir=tmp_path)  # the first of two names for a key wins
    assert len(_entries(tmp_path)) == 3
    assert "spinal muscular atrophy" not in short.keys and "spinal muscular atrophy" in other.keys
    assert not DictionaryMatcher.cached([], cache_dir=tmp_path).find("Seizure")  # an empty list too


@pytest.mark.parametrize(("suffix", "damage"), [(".json", "{"), (".json", '{"keys": 2, "prefixes": 1, "max_words": 3}'),
                                                 (".keys.marisa", "not a trie"), (".prefixes.marisa", "")])
def test_a_damaged_or_unwritable_cache_costs_time_not_results(tmp_path, caplog, suffix: str, damage: str) -> None:
    built = DictionaryMatcher(NAMES)
    DictionaryMatcher.cached(NAMES, cache_dir=tmp_path)
    (tmp_path / (_entries(tmp_path)[0] + suffix)).write_text(damage)
    assert _tables(DictionaryMatcher.cached(NAMES, cache_dir=tmp_path)) == _tables(built)
    assert "unreadable" in caplog.text
    caplog.clear()
    assert _tables(DictionaryMatcher.cached(NAMES, cache_dir=tmp_path)) == _tables(built)  # rewritten whole
    assert not caplog.text
    blocked = tmp_path / "file"
    blocked.write_text("")  # a cache folder that cannot be made
    assert _tables(DictionaryMatcher.cached(NAMES, cache_dir=blocked / "matchers")) == _tables(built)


def test_a_keyed_list_is_read_only_to_build_the_tables(tmp_path) -> None:
    reads: list[int] = []

    def names() -> list[str]:
        reads.append(1)
        return NAMES

    first = DictionaryMatcher.cached(names, key="terms.sqlite abc", cache_dir=tmp_path)
    again = DictionaryMatcher.cached(names, key="terms.sqlite abc", cache_dir=tmp_path)
    assert len(reads) == 1 and _tables(first) == _tables(again) == _tables(DictionaryMatcher(NAMES))
    DictionaryMatcher.cached(names, key="terms.sqlite def", cache_dir=tmp_path)  # another content: built
    assert len(reads) == 2


def test_an_index_matcher_is_keyed_by_the_recorded_hash_of_its_term_dictionary(mini_index, monkeypatch) -> None:
    built = DictionaryMatcher(mini_index.termdb.term_texts())
    first = DictionaryMatcher.for_index(mini_index)
    monkeypatch.setattr(mini_index.termdb, "term_texts", lambda: pytest.fail("names read for a cached matcher"))
    again = DictionaryMatcher.for_index(mini_index, acronyms=False)
    assert _tables(first)[:4] == _tables(again)[:4] == _tables(built)[:4] and not again.acronyms


def test_the_cache_keeps_the_most_recently_used_entries(tmp_path, monkeypatch) -> None:
    import os

    from linker.mentions import matcher_cache

    monkeypatch.setattr(matcher_cache, "MAX_ENTRIES", 2)
    a, b, c = NAMES[:3], NAMES[:4], NAMES[:5]
    stems = {}
    for age, names in enumerate((a, b)):
        before = set(_entries(tmp_path))
        DictionaryMatcher.cached(names, cache_dir=tmp_path)
        (stems[age],) = set(_entries(tmp_path)) - before
        os.utime(tmp_path / f"{stems[age]}.json", (1_000_000 + age, 1_000_000 + age))  # b used after a, long ago
    DictionaryMatcher.cached(a, cache_dir=tmp_path)  # a used again: now the most recent
    DictionaryMatcher.cached(c, cache_dir=tmp_path)  # a third entry: b, the least recently used, goes
    assert stems[0] in _entries(tmp_path) and stems[1] not in _entries(tmp_path)
    assert len(_entries(tmp_path)) == 2 and len(list(tmp_path.iterdir())) == 6  # three files an entry
