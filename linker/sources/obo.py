"""OBO 1.4 reader (HPO, MONDO, DOID…): names, scoped synonyms, definitions, is_a parents, alt/obsolete ids."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from linker.errors import LinkerError, SourceFormatError
from linker.sources._io import iter_lines
from linker.types import AltId, Concept, Record, Term

_SCOPES = {"EXACT", "RELATED", "BROAD", "NARROW"}
_QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"(.*)$')
_ESCAPE = re.compile(r"\\(.)")


@dataclass
class _Stanza:
    kind: str
    line: int
    tags: list[tuple[int, str, str]] = field(default_factory=list)

    def first(self, tag: str) -> str | None:
        return next((value for _, name, value in self.tags if name == tag), None)

    def all(self, tag: str) -> list[tuple[int, str]]:
        return [(lineno, value) for lineno, name, value in self.tags if name == tag]


def _strip_comment(value: str) -> str:
    """Drop a trailing ``! comment`` and ``{qualifiers}`` outside quotes."""
    in_quote = escaped = False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            in_quote = not in_quote
        elif ch == "!" and not in_quote and (i == 0 or value[i - 1].isspace()):
            value = value[:i]
            break
    return value.strip()


def _quoted(path: Path, lineno: int, tag: str, value: str) -> tuple[str, str]:
    match = _QUOTED.match(value)
    if match is None:
        raise SourceFormatError(path, lineno, f'{tag}: expected a quoted string like {tag}: "text" …, got {value!r}')
    return _ESCAPE.sub(r"\1", match.group(1)), match.group(2).strip()


def _stanzas(path: Path) -> Iterator[_Stanza | dict[str, str]]:
    """Yield the header (a dict) first, then each stanza."""
    header: dict[str, str] = {}
    current: _Stanza | None = None
    for lineno, line in iter_lines(path):
        text = line.strip()
        if not text or text.startswith("!"):
            continue
        if text.startswith("["):
            if not text.endswith("]"):
                raise SourceFormatError(path, lineno, f"stanza header {text!r} lacks its closing ']'")
            if current is None:
                yield header
            else:
                yield current
            current = _Stanza(kind=text[1:-1].strip(), line=lineno)
            continue
        tag, sep, value = text.partition(":")
        if not sep or not tag or " " in tag:
            raise SourceFormatError(path, lineno, f"expected 'tag: value', got {text!r}")
        if current is None:
            header.setdefault(tag, value.strip())
        else:
            current.tags.append((lineno, tag, _strip_comment(value)))
    if current is None:
        yield header
    else:
        yield current


def read_header(path: Path) -> dict[str, str]:
    """The OBO header: ``ontology``, ``data-version``, ``format-version``…"""
    first = next(_stanzas(path))
    assert isinstance(first, dict)
    return first


def _parents(stanza: _Stanza) -> list[str]:
    parents = [value.split()[0] for _, value in stanza.all("is_a") if value]
    return list(dict.fromkeys(parents))


def descendants(path: Path, roots: Iterable[str]) -> set[str]:
    """IDs of *roots* and everything below them along ``is_a``; an unknown root is an error."""
    children: dict[str, list[str]] = {}
    known: set[str] = set()
    for stanza in _stanzas(path):
        if isinstance(stanza, _Stanza) and stanza.kind == "Term":
            term_id = stanza.first("id") or ""
            known.add(term_id)
            for parent in _parents(stanza):
                children.setdefault(parent, []).append(term_id)
    roots = list(roots)
    unknown = [root for root in roots if root not in known]
    if unknown:
        raise LinkerError(f"{path}: subtree root(s) {', '.join(unknown)} are not terms of this file; check the ids")
    wanted: set[str] = set()
    stack = roots
    while stack:
        node = stack.pop()
        if node not in wanted:
            wanted.add(node)
            stack.extend(children.get(node, ()))
    return wanted


def read_obo(path: Path, subtree: Iterable[str] = ()) -> Iterator[Record]:
    """Stream the concepts, names and alternative ids of an OBO file.

    Obsolete terms are not linkable: they yield only :class:`AltId` rows mapping them to their
    ``replaced_by`` (or, failing that, ``consider``) targets. With *subtree*, only those roots and
    their ``is_a`` descendants are kept.
    """
    roots = list(subtree)
    keep = descendants(path, roots) if roots else None
    for stanza in _stanzas(path):
        if not isinstance(stanza, _Stanza) or stanza.kind != "Term":
            continue
        yield from _term_records(path, stanza, keep)


def _term_records(path: Path, stanza: _Stanza, keep: set[str] | None) -> Iterator[Record]:
    term_id = stanza.first("id")
    if not term_id:
        raise SourceFormatError(path, stanza.line, "[Term] stanza without an 'id:' tag")
    if keep is not None and term_id not in keep:
        return
    name = stanza.first("name")
    obsolete = (stanza.first("is_obsolete") or "").lower() == "true"
    if obsolete:
        targets = [("replaced_by", v.split()[0]) for _, v in stanza.all("replaced_by") if v]
        if not targets:
            targets = [("consider", v.split()[0]) for _, v in stanza.all("consider") if v]
        for kind, target in targets:
            yield AltId(term_id, target, kind)
            for _, alt in stanza.all("alt_id"):
                yield AltId(alt.split()[0], target, kind)
        return
    if not name:
        raise SourceFormatError(path, stanza.line, f"term {term_id} has no 'name:' tag; every live term needs one")
    definition = None
    def_tags = stanza.all("def")
    if def_tags:
        definition, _ = _quoted(path, def_tags[0][0], "def", def_tags[0][1])
    yield Concept(term_id, name, definition, (), tuple(_parents(stanza)))
    yield Term(term_id, name, "LABEL")
    for lineno, value in stanza.all("synonym"):
        text, rest = _quoted(path, lineno, "synonym", value)
        words = rest.split()
        scope = words[0] if words and words[0] in _SCOPES else "RELATED"
        kind = words[1] if len(words) > 1 and not words[1].startswith("[") else None
        if kind == "obsolete_synonym" or not text.strip():
            continue
        yield Term(term_id, text, scope, kind)
    for _, value in stanza.all("alt_id"):
        if value:
            yield AltId(value.split()[0], term_id, "alt_id")
