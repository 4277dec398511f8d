"""The dictionary matcher: ontology names found in running text after normalisation (case, accents,
punctuation, hyphenation, a light plural/inflection stemmer), longest match first, guarded against very
short and stop-word-only names.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from spacy.lang.en.stop_words import STOP_WORDS

from linker.mentions.proposal import DICTIONARY, Proposal
from linker.normalize import normalize

log = logging.getLogger(__name__)

#: Word tokens of running text (combining marks stay inside their word).
_TOKEN = re.compile(r"(?:[^\W_]|[\u0300-\u036f])+")
#: Characters that may sit between two words of one name ("café-au-lait", "Sjögren's", "and/or").
_JOINER = re.compile(r"(?:[\s\-\u2010-\u2015/+]|['\u2019][sS]?)*")
#: One-word names too general to mean a concept in running text ("the disease", "this syndrome").
GENERIC = ("disease", "diseases", "disorder", "syndrome", "condition", "illness", "abnormality", "anomaly",
           "defect", "lesion", "deficiency", "face", "infection", "finding", "symptom", "sign", "death")
#: Words that belong to a disease mention when they precede a name, as the NCBI-disease guidelines
#: annotate them ("congenital cataracts", "hereditary C7 deficiency", "bilateral retinoblastoma").
MODIFIERS = ("congenital", "hereditary", "familial", "sporadic", "inherited", "malignant", "benign", "bilateral",
             "unilateral", "childhood", "juvenile", "adult", "infantile", "syndromic", "nonsyndromic", "chronic",
             "acute", "recurrent", "progressive", "primary", "idiopathic", "metastatic", "invasive")
STOP = frozenset(STOP_WORDS) | {"patient", "patients", "case", "cases", "study", "studies", "result", "results"}
#: Bumped whenever the tables built from a list of names would come out otherwise (:func:`normalize`,
#: :func:`stem`, :func:`_uninvert`, ``_add``, :data:`STOP`): cached tables of another version are not read.
TABLES_VERSION = 1


def _uninvert(name: str) -> str | None:
    """MeSH-style inverted names read naturally: ``"Anemia, Hemolytic"`` -> ``"Hemolytic Anemia"``
    (names with exactly one comma, a few words on each side); None for other names."""
    parts = name.split(", ")
    if len(parts) != 2 or "," in parts[1] or not 1 <= len(parts[1].split()) <= 3:
        return None
    return f"{parts[1]} {parts[0]}"


_BRITISH = ((re.compile(r"(ae|oe)(?=[a-z])"), "e"), (re.compile(r"(?<=[a-z]{2})our$"), "or"))


def stem(word: str) -> str:
    """A light, symmetric inflection key: plural off (``kidneys``/``kidney``, ``ataxias``/``ataxia``,
    ``deficiencies``/``deficiency``) and British spellings folded (``tumours``/``tumor``,
    ``anaemia``/``anemia``, ``oedema``/``edema``). Applied alike to names and text."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("sses", "xes", "ches", "shes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if len(word) >= 5:
        for pattern, replacement in _BRITISH:
            word = pattern.sub(replacement, word)
    return word


class WordToken(NamedTuple):
    start: int
    end: int
    key: str  # stemmed, normalised word


@lru_cache(maxsize=1 << 16)
def _word_keys(word: str) -> tuple[str, ...]:
    """The stemmed, normalised key(s) of one word of text: running text repeats its words, so each is
    normalised once (the bound keeps a long bulk run's memory flat; 65,536 words hold a few MB)."""
    return tuple(stem(part) for part in normalize(word).split())


def word_tokens(text: str) -> list[WordToken]:
    """Normalised, stemmed words of *text* with their character offsets (a word whose normalisation
    splits in two, e.g. a ligature or fraction, gives two keys with the same offsets)."""
    out: list[WordToken] = []
    for match in _TOKEN.finditer(text):
        word, start = match.group(), match.start()
        if word in {"s", "S"} and start > 0 and text[start - 1] in "'\u2019":
            continue  # possessive: "Sjögren's syndrome" is "Sjögren syndrome"
        end = match.end()
        for key in _word_keys(word):
            out.append(WordToken(start, end, key))
    return out


class DictionaryMatcher:
    """Longest-match lookup of dictionary names over normalised, stemmed words.

    MeSH-style inverted names (``"Anemia, Hemolytic"``) are also looked for in natural order.

    Guards: a name made only of stop words, or a one-word name in :data:`GENERIC`, is never matched; a
    one-word name shorter than ``min_chars`` never matches unless written in capitals (``SMA``, ``HFE``);
    with ``acronyms=False`` a word written in capitals never matches (acronyms are ambiguous, often gene
    symbols: they are then linked only through a definition in the text, see :mod:`linker.abbreviations`;
    on NCBI-disease train both settings score about the same F1, True with more recall); words of one name
    must follow each other with at most spaces, hyphens, slashes or apostrophes between them.
    """

    def __init__(self, names: Iterable[str], *, min_chars: int = 4, max_words: int = 12, acronyms: bool = True,
                 generic: Iterable[str] = GENERIC, modifiers: Iterable[str] = MODIFIERS) -> None:
        self.min_chars = min_chars
        self.acronyms = acronyms
        self.generic = frozenset(stem(w) for w in generic)
        self.modifiers = frozenset(stem(w) for w in modifiers)
        self.keys: Mapping[str, str] = {}
        self.prefixes: Container[str] = set()
        self.max_words = 0
        for name in names:
            self._add(name, [w.key for w in word_tokens(name)], max_words)
            inverted = _uninvert(name)
            if inverted:
                self._add(name, [w.key for w in word_tokens(inverted)], max_words)

    @cached_property
    def vocabulary(self) -> frozenset[str]:
        """The content words of every name (what dense spans must start and end on)."""
        return frozenset(k for key in self.keys for k in key.split() if k not in STOP and len(k) > 2)

    def _add(self, name: str, stems: list[str], max_words: int) -> None:
        if not stems or len(stems) > max_words or all(w in STOP for w in stems):
            return
        if len(stems) == 1 and (stems[0].isdigit() or len(stems[0]) < 2 or stems[0] in self.generic):
            return
        key = " ".join(stems)
        keys, prefixes = self.keys, self.prefixes
        assert isinstance(keys, dict) and isinstance(prefixes, set)  # built here, in memory
        if key in keys:
            return
        keys[key] = name
        self.max_words = max(self.max_words, len(stems))
        for i in range(1, len(stems)):
            prefixes.add(" ".join(stems[:i]))

    @classmethod
    def for_index(cls, index: Any, **options: Any) -> DictionaryMatcher:
        """All names of a :class:`~linker.index.ConceptIndex`'s term dictionary, through the cache (see
        :meth:`cached`) under the SHA-256 its build recorded for that file, so that the names are read only when
        the tables must be built: at ten million names, reading them takes longer than reading the tables."""
        from linker.meta import TERMS_FILE

        recorded = index.meta.get("files", {}).get(TERMS_FILE, {}).get("sha256")
        return cls.cached(index.termdb.term_texts, key=f"{TERMS_FILE} {recorded}" if recorded else None, **options)

    @classmethod
    def cached(cls, names: Sequence[str] | Callable[[], Sequence[str]], *, key: str | None = None,
               cache_dir: str | Path | None = None, **options: Any) -> DictionaryMatcher:
        """``DictionaryMatcher(names, **options)``, its tables read from *cache_dir* (default
        ``$LINKER_CACHE/matchers``) when these names, in this order, were matched with these options before
        (:mod:`linker.mentions.matcher_cache`); tables of more than a million keys are searched where they lie,
        memory-mapped. *names* may be a function that reads them, called only to build the tables, when *key*
        identifies the list instead. A cache that cannot be written only costs the time it would save.
        """
        from linker.mentions import matcher_cache

        matcher = cls((), **options)
        listed = None if callable(names) else names
        if key is None and listed is None:
            listed = names()  # type: ignore[operator]
        shape = [TABLES_VERSION, options.get("max_words", 12), sorted(matcher.generic), key is not None]
        stem = matcher_cache.entry([key] if key is not None else listed or [], shape,
                                   Path(cache_dir) if cache_dir is not None else _cache_dir())
        tables = matcher_cache.read(stem)
        if tables is None:
            if listed is None:
                listed = names()  # type: ignore[operator]
            if len(listed) >= _PROGRESS_FROM:
                log.info("building the dictionary matcher of %s names, once (cached in %s)", f"{len(listed):,}",
                         stem.parent)
            built = cls(_progress(listed), **options)
            tables = built.keys, built.prefixes, built.max_words
            if matcher_cache.write(stem, *tables) and len(built.keys) > matcher_cache.IN_MEMORY_KEYS:
                tables = matcher_cache.read(stem) or tables  # the mapped tries, not gigabytes of strings
        matcher.keys, matcher.prefixes, matcher.max_words = tables
        return matcher

    def __len__(self) -> int:
        return len(self.keys)

    def _acceptable(self, text: str, words: Sequence[WordToken], first: int, last: int) -> bool:
        if first != last:
            return True
        surface = text[words[first].start:words[first].end]
        letters = [ch for ch in surface if ch.isalpha()]
        acronym = 2 <= len(letters) and all(ch.isupper() for ch in letters) and \
            (len(letters) <= 5 or any(ch.isdigit() for ch in surface))
        if acronym:  # ambiguous (often a gene symbol) unless the text defines it
            return self.acronyms
        return len(words[first].key) >= self.min_chars

    def find(self, text: str) -> list[Proposal]:
        """Non-overlapping name matches, left to right, the longest at each position."""
        words = word_tokens(text)
        out: list[Proposal] = []
        i = floor = 0
        while i < len(words):
            best: int | None = None
            key = ""
            for j in range(i, min(len(words), i + self.max_words)):
                if j > i:
                    gap = text[words[j - 1].end:words[j].start]
                    if words[j].start != words[j - 1].start and not _JOINER.fullmatch(gap):
                        break
                key = words[j].key if j == i else f"{key} {words[j].key}"
                if key in self.keys and self._acceptable(text, words, i, j):
                    best = j
                if key not in self.prefixes:
                    break
            if best is None:
                i += 1
                continue
            first = self._extend_left(text, words, i, best, floor)
            out.append(Proposal(words[first].start, words[best].end, DICTIONARY,
                                self.keys[" ".join(w.key for w in words[i:best + 1])]))
            i = floor = best + 1
        return out

    def _extend_left(self, text: str, words: Sequence[WordToken], i: int, last: int, floor: int) -> int:
        """First word of the mention whose name is ``words[i:last + 1]``: leading :data:`MODIFIERS`
        (``congenital cataracts``) and a coordinated head (``breast and ovarian cancer``, when
        ``breast cancer`` is a name too) belong to it; the link stays that of the name found."""
        def joined(a: int) -> bool:
            return _JOINER.fullmatch(text[words[a].end:words[a + 1].start]) is not None

        first = i
        if self.modifiers:
            while first - 1 >= floor and words[first - 1].key in self.modifiers and joined(first - 1):
                first -= 1
        if first == i and i - 2 >= floor and words[i - 1].key in {"and", "or"}:
            before = i - 2
            if words[before].key == "and" and words[i - 1].key == "or" and before - 1 >= floor:
                before -= 1  # "and/or"
            rest = " ".join(w.key for w in words[i + 1:last + 1])
            if rest and f"{words[before].key} {rest}" in self.keys and all(joined(a) for a in range(before, i)):
                first = before
        return first


def _cache_dir() -> Path:
    from linker.defaults import cache_root

    return cache_root() / "matchers"


#: A list of names this long takes seconds to build (MEDIC's 78k: 1.7 s): a progress bar from here on.
_PROGRESS_FROM = 200_000


def _progress(names: Sequence[str]) -> Iterable[str]:
    if len(names) < _PROGRESS_FROM:
        return names
    from tqdm import tqdm

    return tqdm(names, desc="dictionary matcher", unit="names", leave=False, mininterval=1.0)
