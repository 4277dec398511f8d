"""A hostile probe of the command line and the HTTP service (issue 20): every case ends in a clear error or a
correct result, or it is counted as a fault.

    python scripts/probe_hardening.py --json docs/results/probe.json [--kills 4] [--only GROUP]

Each case runs the installed ``linker`` as a user would (a subprocess, in a scratch folder, on the fixtures of
``tests/data``) and is classed by what came back:

- ``traceback``: a Python traceback on stderr;
- ``corrupt``: exit 0 (or 1, "some documents failed") but the output is wrong: a document missing or twice, a
  BOM or a carriage return kept in an id, a resumed run that differs from an uninterrupted one, a damaged
  index that answers;
- ``unbounded``: past the case's time limit (60 s unless it says) or its memory limit (peak RSS 3 GB);
- ``http500``: the service answered 500, or not at all;
- ``unclear``: a non-zero exit without an ``error:`` line that says what is wrong;
- ``ok``: anything else — a correct result, or an exit 2 with an ``error:`` line (printed in the table, so
  that a reader can judge whether it names the file, line or value and the fix).

The probe takes a few minutes on 2 cores (most of it ``linker`` start-up); run nothing heavy beside it.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from xml.etree import ElementTree

from tqdm import tqdm

log = logging.getLogger("probe")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
NOTES = DATA / "notes"
MAX_RSS_KB = 3 * 1024 * 1024
BUILD_CONCEPTS = 6000  # 12,000 names: a build of about half a minute
KILL_DOCS = 3000  # documents of a killed-and-resumed run: enough for it to last past the kills
BOM = "\ufeff"


@dataclass
class Run:
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    rss_kb: int

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr

    @property
    def error_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.startswith(("error:", "Error:"))]
        return lines[-1][:300] if lines else ""


@dataclass
class Outcome:
    kind: str
    detail: str = ""


@dataclass
class Case:
    group: str
    name: str
    check: Callable[[Path], Outcome]
    outcome: Outcome = field(default_factory=lambda: Outcome("not run"))


def linker(args: list[str], cwd: Path, *, timeout: float = 60, stdin: str | None = None) -> Run:
    """Run ``linker ARGS`` in *cwd*; its exit status, output, wall time and peak RSS (``None`` rc: killed at
    *timeout*)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "linker", *args], cwd=cwd, env=env,
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
        if stdin is not None:
            def feed() -> None:
                assert proc.stdin is not None
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.write(stdin.encode("utf-8", "surrogateescape"))
                    proc.stdin.close()
            threading.Thread(target=feed, daemon=True).start()
        rc: int | None = None
        while True:  # wait4, not Popen.wait: the rusage of this child alone, for its peak RSS
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                rc = os.waitstatus_to_exitcode(status)
                break
            if time.perf_counter() - started > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = rc if rc is not None else -9
        out.seek(0)
        err.seek(0)
        return Run(rc, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"),
                   time.perf_counter() - started, usage.ru_maxrss)


def judged(run: Run, *, ok_codes: tuple[int, ...] = (0,), validate: Callable[[], str] | None = None,
           expect_error: bool = False, max_rss_kb: int = MAX_RSS_KB) -> Outcome:
    """Class one run: a traceback, a time-out, a clear error (exit 2 with ``error:``), or a result that
    *validate* checks (it returns what is wrong, or "")."""
    if run.rc is None:
        return Outcome("unbounded", f"killed after {run.seconds:.0f} s")
    if run.traceback:
        tail = [line for line in run.stderr.strip().splitlines() if line.strip()][-1:]
        return Outcome("traceback", tail[0][:300] if tail else "")
    if run.rss_kb > max_rss_kb:
        return Outcome("unbounded", f"peak RSS {run.rss_kb / 1024 / 1024:.1f} GB")
    if run.rc == 2 and run.error_line:
        return Outcome("ok", run.error_line)
    if run.rc not in ok_codes:
        return Outcome("unclear", f"exit {run.rc}: {(run.stderr.strip().splitlines() or [''])[-1][:300]}")
    if expect_error and run.rc == 0:
        wrong = validate() if validate else "exit 0 where an error was due"
        return Outcome("corrupt", wrong) if wrong else Outcome("ok", "exit 0, output right")
    wrong = validate() if validate else ""
    return Outcome("corrupt", wrong) if wrong else Outcome("ok", f"exit {run.rc}, output right")


# ---------------------------------------------------------------- ontology sources (linker build)

SOURCES = {  # format: (fixture, an id of its first concept line, that concept's name there)
    "tsv": ("mini_dictionary.tsv", "MESH:D001943", "Breast Neoplasms"),
    "ctd": ("mini_ctd.tsv", "MESH:C", "Diseases"),
    "jsonl": ("mini_kb.jsonl", "C0036572", "Seizures"),
    "obo": ("mini.obo", "HP:0000001", "All"),
    "umls": ("umls", "C0036572", "Seizures"),
}


def _source_copy(fmt: str, work: Path, mutate: Callable[[str], str] | None) -> Path:
    fixture = DATA / SOURCES[fmt][0]
    if fmt == "umls":
        target = work / "umls"
        shutil.copytree(fixture, target)
        main = target / "MRCONSO.RRF"
    else:
        target = main = work / fixture.name
        shutil.copy(fixture, target)
    if mutate is not None:
        main.write_bytes(mutate(main.read_text(encoding="utf-8")).encode("utf-8", "surrogateescape"))
    return target


def _concept_checks(work: Path, fmt: str) -> str:
    """What is wrong with the index built from *fmt*'s fixture: its first concept must keep its id and name."""
    _, cid, name = SOURCES[fmt]
    got = linker(["get", cid, "--index", "idx"], work)
    if got.rc != 0:
        return f"the first concept {cid} is not in the index ({got.error_line or got.stderr[-200:]})"
    hit = linker(["lookup", name, "-k", "1", "--json", "--index", "idx"], work)
    try:
        best = json.loads(hit.stdout.splitlines()[0])["candidates"][0]
    except (IndexError, KeyError, ValueError):
        return f"lookup of {name!r} gave no candidate"
    if best["concept_id"] != cid or best["score"] < 0.999:
        return f"the first name {name!r} no longer matches its concept exactly: {best}"
    return ""


def _build_case(fmt: str, mutate: Callable[[str], str] | None, *, expect: str, extra: list[str] | None = None,
                timeout: float = 120) -> Callable[[Path], Outcome]:
    """*expect*: ``same`` (the first concept as in the fixture), ``error`` (refused with a clear message; a
    build that goes through and keeps the first concept is fine too), ``any`` (no traceback, bounded)."""
    def check(work: Path) -> Outcome:
        source = _source_copy(fmt, work, mutate)
        run = linker(["build", str(source), "idx", "--format", fmt, *(extra or [])], work, timeout=timeout)
        validate = (lambda: _concept_checks(work, fmt)) if expect in ("same", "error") else None
        return judged(run, validate=validate)
    return check


def _huge_name(fmt: str) -> Callable[[str], str]:
    big = "a" * 50_000_000
    def mutate(text: str) -> str:
        _, cid, name = SOURCES[fmt]
        if fmt == "jsonl":
            return text + json.dumps({"concept_id": "X:1", "canonical_name": big}) + "\n"
        if fmt == "obo":
            return text + f"\n[Term]\nid: X:1\nname: {big}\n"
        if fmt == "umls":
            return text + f"C9999999|ENG|P|L1|PF|S1|Y|A1||||MSH|MH|D1|{big}|0|N||\n"
        if fmt == "ctd":
            return text + f"{big}\tMESH:X1\t\t\t\t\t\t\t\n"
        return text + f"X:1\t{big}\t1\n"
    return mutate


def source_cases() -> list[Case]:
    cases = []
    for fmt in SOURCES:
        cases += [
            Case("source", f"{fmt}: UTF-8 BOM", _build_case(fmt, lambda t: BOM + t, expect="same")),
            Case("source", f"{fmt}: CRLF line ends", _build_case(fmt, lambda t: t.replace("\n", "\r\n"), expect="same")),
            Case("source", f"{fmt}: empty file", _build_case(fmt, lambda t: "", expect="error")),
            Case("source", f"{fmt}: binary garbage", _build_case(fmt, lambda t: "\x00\x01\x02garbage\x00" * 50,
                                                                  expect="error")),
            Case("source", f"{fmt}: invalid UTF-8 byte", _build_case(fmt, lambda t: t + "\udcff\udcfe broken\n",
                                                                      expect="any")),
            Case("source", f"{fmt}: NUL inside a line", _build_case(fmt, lambda t: t.replace("e", "e\x00", 1),
                                                                     expect="any")),
            Case("source", f"{fmt}: a 50 MB name", _build_case(fmt, _huge_name(fmt), expect="any", timeout=180)),
            Case("source", f"{fmt}: truncated half-way", _build_case(fmt, lambda t: t[: len(t) // 2], expect="any")),
        ]
    cases += [
        Case("source", "missing file", lambda w: judged(linker(["build", "nothing.tsv", "idx"], w), expect_error=True)),
        Case("source", "a folder as a TSV", lambda w: (w.joinpath("d.tsv").mkdir(),
                                                      judged(linker(["build", "d.tsv", "idx"], w), expect_error=True))[1]),
        Case("source", "truncated .gz", _truncated_gz),
        Case("source", "unknown suffix", lambda w: (w.joinpath("x.weird").write_text("a\tb\n"),
                                                   judged(linker(["build", "x.weird", "idx"], w), expect_error=True))[1]),
    ]
    return cases


def _truncated_gz(work: Path) -> Outcome:
    data = gzip.compress((DATA / "mini_ctd.tsv").read_bytes() * 50)
    (work / "CTD_diseases.tsv.gz").write_bytes(data[: len(data) // 2])
    return judged(linker(["build", "CTD_diseases.tsv.gz", "idx"], work), expect_error=True)


# ---------------------------------------------------------------- documents in (linker annotate)

def _ids_in_output(path: Path, fmt: str) -> list[str]:
    """Every document id an annotate output holds, once per time it holds it (unreadable output: raises)."""
    if fmt == "jsonl":
        return [json.loads(line)["doc_id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if fmt == "pubtator":
        return [line.split("|", 2)[0] for line in path.read_text(encoding="utf-8").splitlines() if "|t|" in line]
    if fmt == "bioc":
        return [doc.findtext("id") or "" for doc in ElementTree.parse(path).getroot().iter("document")]
    if fmt == "sqlite":
        with sqlite3.connect(path) as conn:
            return [row[0] for row in conn.execute("SELECT doc_id FROM documents")]
    if fmt == "brat":
        return sorted(p.stem for p in path.glob("*.txt"))
    raise ValueError(fmt)


def _failed_ids(path: Path, fmt: str) -> list[str]:
    if fmt == "sqlite":
        with sqlite3.connect(path) as conn:
            return [row[0] for row in conn.execute("SELECT doc_id FROM errors")]
    errors = path / "errors.jsonl" if fmt == "brat" else Path(str(path) + ".errors.jsonl")
    if not errors.exists():
        return []
    return [str(json.loads(line).get("doc_id")) for line in errors.read_text(encoding="utf-8").splitlines() if line]


OUT_SUFFIX = {"jsonl": "out.jsonl", "pubtator": "out.pubtator", "bioc": "out.xml", "sqlite": "out.sqlite",
              "brat": "brat/"}


def _accounted(work: Path, fmt: str, good: list[str], *, bad_at_least: int = 0, twice_in_input: bool = False) -> str:
    """What is wrong: each of the *good* ids once in the output; at least *bad_at_least* failures listed; no
    document both annotated and failed, none twice."""
    out = work / OUT_SUFFIX[fmt]
    try:
        done = _ids_in_output(out, fmt)
    except Exception as err:  # noqa: BLE001 - unreadable output is the fault we look for
        return f"the output does not read back: {type(err).__name__}: {err}"
    failed = _failed_ids(out, fmt)
    counts = Counter(done)
    twice = [i for i, n in counts.items() if n > 1]
    missing = [i for i in good if i not in counts]
    if twice:
        return f"documents written twice: {twice[:5]}"
    if missing:
        return f"good documents missing: {missing[:5]} (failures listed: {failed[:5]})"
    if len(failed) < bad_at_least:
        return f"{bad_at_least} bad document(s) should be listed as failures; {len(failed)} are"
    both = set(done) & set(failed)
    if both and not twice_in_input:
        return f"documents both annotated and failed: {sorted(both)[:5]}"
    return ""


def _annotate_case(name: str, content: str | bytes, good: list[str], *, bad: int = 0, out: str = "jsonl",
                   args: list[str] | None = None, timeout: float = 90) -> Case:
    def check(work: Path) -> Outcome:
        target = work / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8", errors="surrogateescape")
        run = linker(["annotate", name, "-o", OUT_SUFFIX[out], "--index", str(work.parent / "index"), "-p", "1",
                      *(args or [])], work, timeout=timeout)
        return judged(run, ok_codes=(0, 1), validate=lambda: _accounted(work, out, good, bad_at_least=bad,
                                                                          twice_in_input=name == "dupid.jsonl"))
    return Case("annotate", f"{name} -> {out}: " + _describe(name, content), check)


def _describe(name: str, content: str | bytes) -> str:
    return DESCRIPTIONS.get(name, name)


DESCRIPTIONS: dict[str, str] = {}


def _jl(*records: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def annotate_cases() -> list[Case]:
    good = {"doc_id": "g1", "text": "The boy had a seizure and short stature."}
    good2 = {"doc_id": "g2", "text": "No fever was seen."}
    deep = '{"doc_id": "deep", "text": ' + "[" * 100_000 + "]" * 100_000 + "}"
    specs: list[tuple[str, str, str | bytes, list[str], int, str]] = [
        ("bom.jsonl", "UTF-8 BOM before the first line", BOM + _jl(good, good2), ["g1", "g2"], 0, "jsonl"),
        ("deep.jsonl", "a line nested 100k deep", _jl(good, deep, good2), ["g1", "g2"], 1, "jsonl"),
        ("notjson.jsonl", "a line that is not JSON", _jl(good, "{not json", good2), ["g1", "g2"], 1, "jsonl"),
        ("notext.jsonl", "a record without text", _jl(good, {"doc_id": "x"}, good2), ["g1", "g2"], 1, "jsonl"),
        ("textnum.jsonl", "text that is a number", _jl(good, {"doc_id": "x", "text": 5}, good2), ["g1", "g2"], 1,
         "jsonl"),
        ("dupid.jsonl", "one id twice", _jl(good, {"doc_id": "g1", "text": "again"}, good2), ["g1", "g2"], 1, "jsonl"),
        ("surrogate.jsonl", "a lone surrogate in a text", _jl(good, '{"doc_id": "s", "text": "bad \\ud800 x"}',
                                                              good2), ["g1", "g2"], 0, "jsonl"),
        ("badutf8.jsonl", "an invalid UTF-8 byte", _jl(good).encode() + b'{"doc_id": "u", "text": "caf\xe9"}\n'
         + _jl(good2).encode(), ["g1", "g2"], 0, "jsonl"),
        ("nulid.jsonl", "an id holding NUL, to BioC", _jl(good, {"doc_id": "a\x00b", "text": "seizure"}, good2),
         ["g1", "g2"], 0, "bioc"),
        ("nlid.jsonl", "an id holding a newline, to PubTator", _jl(good, {"doc_id": "a\nb", "text": "seizure"}, good2),
         ["g1", "g2"], 0, "pubtator"),
        ("nlid2.jsonl", "an id holding a newline, to BioC", _jl(good, {"doc_id": "a\nb", "text": "seizure"}, good2),
         ["g1", "g2"], 0, "bioc"),
        ("pipeid.jsonl", "an id holding '|', to PubTator", _jl(good, {"doc_id": "a|t|b", "text": "seizure"}, good2),
         ["g1", "g2"], 0, "pubtator"),
        ("longid.jsonl", "an id of 300 bytes, to BRAT", _jl(good, {"doc_id": "x" * 300, "text": "seizure"}, good2),
         ["g1", "g2"], 1, "brat"),
        ("slashid.jsonl", "an id '../escape', to BRAT", _jl(good, {"doc_id": "../escape", "text": "seizure"}, good2),
         ["g1", "g2"], 0, "brat"),
        ("emptyid.jsonl", "an empty id, to BRAT", _jl(good, {"doc_id": "", "text": "seizure"}, good2),
         ["g1", "g2"], 0, "brat"),
        ("ctrl.jsonl", "control characters in a text, to BioC", _jl(good, {"doc_id": "c", "text": "seiz\x01ure \x0b"},
                                                                     good2), ["g1", "g2"], 0, "bioc"),
        ("ctrl2.jsonl", "control characters in a text, to SQLite", _jl(good, {"doc_id": "c", "text": "a\x00b seizure"},
                                                                        good2), ["g1", "g2"], 0, "sqlite"),
        ("big.jsonl", "a 20 MB text", _jl(good, {"doc_id": "big", "text": "seizure and fever. " * 1_050_000}, good2),
         ["g1", "g2"], 0, "jsonl"),
        ("empty.jsonl", "an empty file", "", [], 0, "jsonl"),
        ("blank.jsonl", "blank lines between records", _jl(good) + "\n\n   \n" + _jl(good2), ["g1", "g2"], 0, "jsonl"),
        ("bad.pubtator", "start > end", "p1|t|A seizure.\np1|a|\np1\t9\t2\tseizure\tDisease\tHP:0001250\n\n"
         "p2|t|Fever.\np2|a|\n\n", ["p2"], 1, "jsonl"),
        ("bom.pubtator", "UTF-8 BOM", BOM + "p1|t|A seizure.\np1|a|\n\np2|t|Fever.\np2|a|\n\n", ["p1", "p2"], 0,
         "jsonl"),
        ("offx.xml", "<location offset='x'>", _bioc([("b1", 0, "A seizure.", '<annotation id="0"><location offset="x" '
                                                      'length="2"/><text>x</text></annotation>'),
                                                     ("b2", 0, "Fever.", "")]), ["b2"], 0, "jsonl"),
        ("offbig.xml", "<offset>900000000</offset>", _bioc([("b1", 900_000_000, "A seizure.", ""),
                                                             ("b2", 0, "Fever.", "")]), ["b2"], 0, "jsonl"),
        ("offneg.xml", "<offset>-5</offset>", _bioc([("b1", -5, "A seizure.", ""), ("b2", 0, "Fever.", "")]),
         ["b2"], 0, "jsonl"),
        ("entity.xml", "an XML entity bomb", '<?xml version="1.0"?><!DOCTYPE c [<!ENTITY a "aaaaaaaaaa">'
         '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
         '<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">'
         '<!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;"><!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">]>'
         "<collection><document><id>e</id><passage><offset>0</offset><text>&g;&g;&g;&g;</text></passage>"
         "</document></collection>", [], 0, "jsonl"),
        ("trunc.xml", "XML cut half-way", _bioc([("b1", 0, "A seizure.", ""), ("b2", 0, "Fever.", "")])[:160], [], 0,
         "jsonl"),
        ("quote.csv", "an unterminated quote", 'id,text\nc1,"A seizure.\nc2,Fever.\nc3,short stature\n', [], 1,
         "jsonl"),
        ("bom.csv", "UTF-8 BOM before the header", BOM + "id,text\nc1,A seizure.\nc2,Fever.\n", ["c1", "c2"], 0,
         "jsonl"),
        ("nocol.csv", "no text column", "id,body2\nc1,A seizure.\n", [], 1, "jsonl"),
        ("ragged.csv", "a row with too many fields", "id,text\nc1,A seizure.\nc2,Fever.,extra,more\nc3,Ataxia.\n",
         ["c1", "c3"], 0, "jsonl"),
    ]
    cases = []
    for name, description, content, ids, bad, out in specs:
        DESCRIPTIONS[name] = description
        cases.append(_annotate_case(name, content, ids, bad=bad, out=out))
    cases.append(Case("annotate", "a folder of .txt with a Latin-1 file", _txt_folder))
    cases.append(Case("annotate", "an input that does not exist",
                      lambda w: judged(linker(["annotate", "none.jsonl", "-o", "o.jsonl", "--index",
                                                str(w.parent / "index")], w), expect_error=True)))
    for option in (["-p", "0"], ["--batch-size", "0"], ["--set", "threshold=2"], ["--set", "k=-1"],
                   ["--set", "nonsense=1"], ["--set", "threshold=NaN"], ["--to", "xml"], ["--index", "no-such-index"]):
        cases.append(Case("annotate", f"option {' '.join(option)}", _option_case(option)))
    return cases


def _option_case(option: list[str]) -> Callable[[Path], Outcome]:
    def check(work: Path) -> Outcome:
        (work / "in.jsonl").write_text(_jl({"doc_id": "g1", "text": "A seizure."}))
        args = ["annotate", "in.jsonl", "-o", "out.jsonl", "-p", "1"]
        if "--index" not in option:
            args += ["--index", str(work.parent / "index")]
        return judged(linker(args + option, work), expect_error=True, validate=lambda: "exit 0 for a bad value")
    return check


def _bioc(docs: list[tuple[str, int, str, str]]) -> str:
    body = "".join(f"<document><id>{i}</id><passage><offset>{off}</offset><text>{text}</text>{ann}</passage>"
                   "</document>" for i, off, text, ann in docs)
    return f"<?xml version='1.0' encoding='UTF-8'?><collection><source>p</source>{body}</collection>"


def _txt_folder(work: Path) -> Outcome:
    folder = work / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("A seizure.", encoding="utf-8")
    (folder / "b.txt").write_bytes("Caf\xe9 fever.".encode("latin-1"))
    run = linker(["annotate", "notes", "-o", "out.jsonl", "--index", str(work.parent / "index"), "-p", "1"], work)
    return judged(run, ok_codes=(0, 1), validate=lambda: _accounted(work, "jsonl", ["a"]))


# ---------------------------------------------------------------- the index on disk

def _damaged(name: str, damage: Callable[[Path], None], command: list[str]) -> Case:
    def check(work: Path) -> Outcome:
        index = work / "idx"
        shutil.copytree(work.parent / "index", index)
        damage(index)
        run = linker(command + ["--index", "idx"], work)
        if command[0] == "verify" and run.rc == 1 and "damaged" in run.stdout + run.stderr and not run.traceback:
            return Outcome("ok", "verify: " + (run.stdout + run.stderr).strip().splitlines()[-1][:200])
        return judged(run, expect_error=True, validate=lambda: f"exit 0 on a damaged index: {run.stdout[:120]!r}")
    return Case("index", name, check)


def _truncate(path: str, fraction: float = 0.5) -> Callable[[Path], None]:
    def damage(index: Path) -> None:
        target = index / path
        data = target.read_bytes()
        target.write_bytes(data[: int(len(data) * fraction)])
    return damage


def _flip_vectors(index: Path) -> None:
    target = index / "faiss.index"
    data = bytearray(target.read_bytes())
    middle = len(data) // 2
    for i in range(middle, min(len(data), middle + 256)):
        data[i] ^= 0xFF
    target.write_bytes(bytes(data))


def _swap_terms(index: Path) -> None:
    with sqlite3.connect(index / "terms.sqlite") as conn:  # the same count, other names: what a swap looks like
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            if "name" in cols:
                conn.execute(f"UPDATE {table} SET name = name || ' (other)'")


def index_cases() -> list[Case]:
    lookup = ["lookup", "seizure of the brain", "-k", "3"]
    cases = [
        _damaged("faiss.index cut in half", _truncate("faiss.index"), lookup),
        _damaged("terms.sqlite cut in half", _truncate("terms.sqlite"), lookup),
        _damaged("meta.json not JSON", lambda i: (i / "meta.json").write_text("{oops"), lookup),
        _damaged("meta.json missing", lambda i: (i / "meta.json").unlink(), lookup),
        _damaged("faiss.index empty", _truncate("faiss.index", 0.0), lookup),
        _damaged("vector bytes overwritten, verify", _flip_vectors, ["verify"]),
        _damaged("terms.sqlite changed (same count), verify", _swap_terms, ["verify"]),
        _damaged("terms.sqlite changed (same count), lookup", _swap_terms, lookup),
        Case("index", "index path is a file", lambda w: (w.joinpath("f").write_text("x"),
                                                         judged(linker(lookup + ["--index", "f"], w),
                                                                expect_error=True))[1]),
        Case("index", "lookup -k 0", lambda w: judged(linker(["lookup", "x", "-k", "0", "--index",
                                                               str(w.parent / "index")], w), expect_error=True)),
        Case("index", "lookup -k 10**9", lambda w: judged(linker(["lookup", "fever", "-k", "1000000000", "--index",
                                                                   str(w.parent / "index")], w), ok_codes=(0,))),
        Case("index", "lookup of a 2 MB query", lambda w: judged(linker(["lookup", "--index", str(w.parent / "index")],
                                                                        w, stdin="seizure " * 250_000 + "\n"))),
        Case("index", "get of an unknown id", lambda w: judged(linker(["get", "HP:9999999", "--index",
                                                                        str(w.parent / "index")], w),
                                                                 expect_error=True)),
    ]
    return cases


# ---------------------------------------------------------------- kill -9, concurrent runs, stale locks

def _docs_file(work: Path, n: int = 400) -> Path:
    rng = random.Random(7)
    words = ["seizure", "short stature", "fever", "ataxia", "the", "boy", "had", "no", "and", "kidney", "enlarged"]
    path = work / "many.jsonl"
    path.write_text(_jl(*({"doc_id": f"d{i}", "text": " ".join(rng.choice(words) for _ in range(40))}
                          for i in range(n))))
    return path


def _spawn(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "linker", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _read_output(path: Path) -> bytes:
    if path.is_dir():
        return b"".join(p.name.encode() + p.read_bytes() for p in sorted(path.iterdir())
                        if p.is_file() and not p.name.startswith("."))
    if path.suffix == ".sqlite":
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT doc_id, start, end, concept_id FROM mentions ORDER BY doc_id, start, end")
            return json.dumps(sorted(map(list, rows))).encode()
    return path.read_bytes()


def _kill_repeatedly(args: list[str], work: Path, kills: int, rng: random.Random, low: float, high: float) -> int:
    """Start ``linker ARGS`` *kills* times, each killed with SIGKILL after a random *low*–*high* seconds;
    how many kills found it still running."""
    landed = 0
    for _ in range(kills):
        proc = _spawn(args, work)
        time.sleep(rng.uniform(low, high))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            landed += 1
        proc.communicate()
    return landed


def _resumed(final: Run, validate: Callable[[], str], landed: int, kills: int) -> Outcome:
    outcome = judged(final, validate=validate)
    outcome.detail += f"; {landed} of {kills} kills landed while it was going"
    return outcome


def _kill_case(fmt: str, kills: int) -> Case:
    """Annotation killed (-9) at random moments, then resumed; the output must equal an uninterrupted run's."""
    def check(work: Path) -> Outcome:
        docs = _docs_file(work, KILL_DOCS)
        index = str(work.parent / "index")
        reference = work / ("ref-" + OUT_SUFFIX[fmt])
        base = ["annotate", docs.name, "--index", index, "-p", "1", "--batch-size", "8"]
        ref = linker(base + ["-o", "ref-" + OUT_SUFFIX[fmt]], work, timeout=300)
        if ref.rc != 0:
            return judged(ref)
        out = work / OUT_SUFFIX[fmt]
        landed = _kill_repeatedly(base + ["-o", OUT_SUFFIX[fmt]], work, kills, random.Random(fmt), 4.0, 12.0)
        final = linker(base + ["-o", OUT_SUFFIX[fmt]], work, timeout=300)
        def same() -> str:
            wrong = _accounted(work, fmt, [f"d{i}" for i in range(KILL_DOCS)])
            if wrong:
                return wrong
            return "" if _read_output(out) == _read_output(reference) else "resumed output differs from an uninterrupted run"
        return _resumed(final, same, landed, kills)
    return Case("crash", f"annotate -> {fmt}: {kills} x kill -9, then resume", check)


def _build_kill_case(kills: int) -> Case:
    def check(work: Path) -> Outcome:
        source = work / "names.tsv"  # large enough that the kills land in every stage of a build
        rng = random.Random(5)
        syllables = ["car", "dio", "neu", "ro", "pa", "thy", "my", "elo", "gen", "ic", "oste", "algia", "itis"]
        source.write_text("".join(f"X:{i}\t{''.join(rng.choice(syllables) for _ in range(4))} {i}\t1\n"
                                  f"X:{i}\t{''.join(rng.choice(syllables) for _ in range(3))} disorder {i}\t0\n"
                                  for i in range(BUILD_CONCEPTS)))
        ref = linker(["build", str(source), "ref"], work, timeout=600)
        if ref.rc != 0:
            return judged(ref)
        landed = _kill_repeatedly(["build", str(source), "idx"], work, kills, random.Random(11), 4.0, 30.0)
        final = linker(["build", str(source), "idx"], work, timeout=600)
        def same() -> str:
            a = linker(["lookup", "fits of the brain", "-k", "5", "--json", "--index", "idx"], work).stdout
            b = linker(["lookup", "fits of the brain", "-k", "5", "--json", "--index", "ref"], work).stdout
            verify = linker(["verify", "--index", "idx"], work)
            if verify.rc != 0:
                return f"linker verify fails on the resumed build: {verify.error_line}"
            left = [p.name for p in (work / "idx").iterdir() if p.name.endswith(".tmp") or p.name == ".build"]
            if left:
                return f"stale state left in the index: {left}"
            return "" if a == b and a else f"the resumed build answers otherwise: {a[:100]!r} vs {b[:100]!r}"
        return _resumed(final, same, landed, kills)
    return Case("crash", f"build: {kills} x kill -9, then resume", check)


def _concurrent_case(fmt: str) -> Case:
    def check(work: Path) -> Outcome:
        docs = _docs_file(work, 20_000)
        args = ["annotate", docs.name, "-o", OUT_SUFFIX[fmt], "--index", str(work.parent / "index"), "-p", "1"]
        first = _spawn(args, work)
        output = work / OUT_SUFFIX[fmt]
        while first.poll() is None and not (output.exists() and output.stat().st_size):
            time.sleep(0.1)  # the first run is writing: now the second starts beside it
        if first.poll() is not None:
            return Outcome("probe-error", "the first run ended before it wrote anything")
        second = linker(args, work, timeout=300)
        overlapped = first.poll() is None
        out, err = first.communicate(timeout=600)
        if not overlapped:
            return Outcome("probe-error", "the first run ended before the second did: no overlap to judge")
        if second.rc == 0 and first.returncode == 0:
            wrong = _accounted(work, fmt, [f"d{i}" for i in range(20_000)])
            return Outcome("corrupt", "both runs exited 0" + (f"; {wrong}" if wrong else " (output intact)"))
        refused = second if second.rc != 0 else Run(first.returncode, out, err, 0, 0)
        if "Traceback" in refused.stderr:
            return Outcome("traceback", refused.stderr.strip().splitlines()[-1][:300])
        if not refused.error_line:
            return Outcome("unclear", f"refused without a message: {refused.stderr[-200:]!r}")
        wrong = _accounted(work, fmt, [f"d{i}" for i in range(20_000)])
        return Outcome("corrupt", wrong) if wrong else Outcome("ok", refused.error_line)
    return Case("concurrent", f"two annotate runs on one {fmt} output", check)


def _stale_lock_case(work: Path) -> Outcome:
    docs = _docs_file(work)
    args = ["annotate", docs.name, "-o", "out.jsonl", "--index", str(work.parent / "index"), "-p", "1"]
    proc = _spawn(args, work)
    time.sleep(5.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    run = linker(args, work, timeout=300)
    return judged(run, validate=lambda: _accounted(work, "jsonl", [f"d{i}" for i in range(400)]))


def _concurrent_build(work: Path) -> Outcome:
    source = str(DATA / "mini.obo")
    first = _spawn(["build", source, "idx"], work)
    time.sleep(1.5)
    second = linker(["build", source, "idx"], work, timeout=300)
    out, err = first.communicate(timeout=300)
    verify = linker(["verify", "--index", "idx"], work)
    if second.traceback or "Traceback" in err:
        return Outcome("traceback", (second.stderr + err).strip().splitlines()[-1][:300])
    if verify.rc != 0:
        return Outcome("corrupt", f"the index fails verify after two builds: {verify.error_line}")
    message = second.error_line or (err.splitlines()[-1] if first.returncode else "")
    return Outcome("ok", message or "both builds ended with the same, verified index")


def crash_cases(kills: int) -> list[Case]:
    cases = [_kill_case(fmt, kills) for fmt in ("jsonl", "pubtator", "bioc", "sqlite", "brat")]
    cases.append(_build_kill_case(kills))
    cases += [_concurrent_case(fmt) for fmt in ("jsonl", "bioc")]
    cases.append(Case("concurrent", "a killed run's lock is taken over", _stale_lock_case))
    cases.append(Case("concurrent", "two builds into one folder", _concurrent_build))
    return cases


# ---------------------------------------------------------------- the HTTP service

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        return 0, f"{type(err).__name__}: {err}"


def http_cases() -> list[Case]:
    """The service's cases run against one server, started by the first of them."""
    state: dict[str, object] = {}

    def server(work: Path) -> int:
        if "port" not in state:
            port = _free_port()
            proc = _spawn(["serve", "--index", str(work.parent / "index"), "--port", str(port), "--read-timeout", "3",
                           "--max-annotate", "100000"], work)
            state.update(port=port, proc=proc)
            for _ in range(120):
                if _http(port, "GET", "/health", timeout=2)[0] == 200:
                    break
                time.sleep(0.5)
        return int(state["port"])  # type: ignore[arg-type]

    def answer(method: str, path: str, body: bytes | None, want: tuple[int, ...]) -> Callable[[Path], Outcome]:
        def check(work: Path) -> Outcome:
            status, text = _http(server(work), method, path, body)
            if status == 0:
                return Outcome("http500", f"no answer: {text}")
            if status >= 500 and status != 503:
                return Outcome("http500", f"{status}: {text[:200]}")
            if status not in want:
                return Outcome("unclear", f"{status} (expected {want}): {text[:200]}")
            return Outcome("ok", f"{status}: {text[:160]}")
        return check

    def js(obj: object) -> bytes:
        return json.dumps(obj).encode()

    four = tuple(range(400, 430))
    cases = [
        ("GET /lookup k=NaN", "GET", "/lookup?q=fever&k=NaN", None, four),
        ("GET /lookup k=-1", "GET", "/lookup?q=fever&k=-1", None, four),
        ("GET /lookup k=10**9", "GET", "/lookup?q=fever&k=1000000000", None, four + (200,)),
        ("GET /lookup lone surrogate", "GET", "/lookup?q=%ED%A0%80", None, four + (200,)),
        ("GET /lookup no q", "GET", "/lookup", None, four),
        ("POST /lookup k NaN (raw JSON)", "POST", "/lookup", b'{"texts": ["fever"], "k": NaN}', four),
        ("POST /lookup k 1e400", "POST", "/lookup", b'{"texts": ["fever"], "k": 1e400}', four),
        ("POST /lookup lone surrogate", "POST", "/lookup", b'{"texts": ["bad \\ud800"]}', four),
        ("POST /lookup texts not a list", "POST", "/lookup", js({"texts": "fever"}), four),
        ("POST /lookup empty list", "POST", "/lookup", js({"texts": []}), four),
        ("POST /lookup 10,000 texts", "POST", "/lookup", js({"texts": ["fever"] * 10_000}), four),
        ("POST /lookup a 900 kB text", "POST", "/lookup", js({"texts": ["fever " * 150_000]}), four + (200,)),
        ("POST /lookup not JSON", "POST", "/lookup", b"{nope", four),
        ("POST /lookup nested 100k deep", "POST", "/lookup", b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
         four),
        ("POST /lookup 2 MB body", "POST", "/lookup", js({"texts": ["x" * 2_000_000]}), four),
        ("POST /annotate 150k characters", "POST", "/annotate", js({"text": "seizure. " * 17_000}), four),
        ("POST /annotate lone surrogate", "POST", "/annotate", b'{"text": "a seizure \\udfff"}', four + (200,)),
        ("POST /annotate text null", "POST", "/annotate", js({"text": None}), four),
        ("POST /annotate NUL in text", "POST", "/annotate", js({"text": "a\x00 seizure"}), four + (200,)),
        ("GET /concept unknown", "GET", "/concept/HP:9999999", None, (404,)),
        ("GET /concept odd path", "GET", "/concept/..%2F..%2Fetc%2Fpasswd", None, (404,)),
        ("GET /docs offline", "GET", "/docs", None, (200,)),
    ]
    out = [Case("http", name, answer(method, path, body, want)) for name, method, path, body, want in cases]

    def docs_assets(work: Path) -> Outcome:
        status, page = _http(server(work), "GET", "/docs")
        if status != 200:
            return Outcome("unclear", f"/docs answered {status}")
        assets = re.findall(r'(?:src|href)="([^"]+)"', page)
        external = [a for a in assets if a.startswith(("http:", "https:", "//"))]
        return Outcome("corrupt", f"/docs loads from outside: {external}") if external else Outcome("ok", "no CDN")

    def slow_client(work: Path) -> Outcome:
        port = server(work)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(b"POST /lookup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"texts\": [")
            started = time.perf_counter()
            try:
                data = sock.recv(4096)
            except TimeoutError:
                return Outcome("unbounded", "a stalled body was still held after 20 s")
            waited = time.perf_counter() - started
        return Outcome("ok", f"answered after {waited:.1f} s: {data[:60]!r}")

    def lookups_during_annotation(work: Path) -> Outcome:
        port = server(work)
        text = js({"text": "The boy had seizures, fever and short stature. " * 2_000})
        threads = [threading.Thread(target=_http, args=(port, "POST", "/annotate", text, 60)) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        started = time.perf_counter()
        status, _ = _http(port, "GET", "/lookup?q=fits%20of%20the%20brain", timeout=60)
        waited = time.perf_counter() - started
        for thread in threads:
            thread.join()
        if status != 200:
            return Outcome("http500" if status >= 500 and status != 503 else "unclear", f"lookup answered {status}")
        return Outcome("ok", f"a lookup behind 3 large annotations answered in {waited:.2f} s")

    def abandoned(work: Path) -> Outcome:
        port = server(work)
        body = js({"text": "The boy had seizures, fever and short stature. " * 2_000})
        for _ in range(30):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /annotate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            sock.close()
        time.sleep(1.0)
        started = time.perf_counter()
        status, _ = _http(port, "GET", "/lookup?q=fits%20of%20the%20brain", timeout=120)
        waited = time.perf_counter() - started
        if status != 200:
            return Outcome("unclear", f"lookup after 30 abandoned annotations answered {status}")
        return Outcome("ok", f"a lookup after 30 abandoned annotations answered in {waited:.2f} s")

    def stop(work: Path) -> Outcome:
        proc = state.get("proc")
        if not isinstance(proc, subprocess.Popen):
            return Outcome("ok", "no server")
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return Outcome("unbounded", "the server did not stop on SIGINT within 30 s")
        if "Traceback" in err:
            return Outcome("traceback", [line for line in err.splitlines() if line.strip()][-1][:300])
        return Outcome("ok", f"stopped, no traceback in its log ({len(err.splitlines())} lines)")

    out += [Case("http", "/docs without a CDN", docs_assets), Case("http", "a client that stalls its body", slow_client),
            Case("http", "a lookup while large annotations run", lookups_during_annotation),
            Case("http", "30 abandoned annotations", abandoned), Case("http", "server log after all of it", stop)]
    return out


# ---------------------------------------------------------------- the run

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write every case and its outcome here")
    parser.add_argument("--kills", type=int, default=4, help="kill -9 runs per crash case")
    parser.add_argument("--only", action="append", help="run only these groups (source, annotate, index, crash, "
                                                        "concurrent, http)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cases = source_cases() + annotate_cases() + index_cases() + crash_cases(args.kills) + http_cases()
    if args.only:
        cases = [c for c in cases if c.group in args.only]
    scratch = Path(tempfile.mkdtemp(prefix="linker-probe-"))
    log.info("building the probe's index in %s", scratch)
    built = linker(["build", str(DATA / "mini.obo"), str(scratch / "index")], scratch, timeout=600)
    if built.rc != 0:
        raise SystemExit(f"cannot build the probe's index: {built.stderr[-500:]}")
    started = time.time()
    for number, case in enumerate(tqdm(cases, desc="probe", unit="case")):
        work = scratch / f"case{number:03d}"
        work.mkdir()
        try:
            case.outcome = case.check(work)
        except Exception as err:  # noqa: BLE001 - a fault of the probe itself: say so, go on
            case.outcome = Outcome("probe-error", f"{type(err).__name__}: {err}")
        if case.outcome.kind != "ok":
            log.warning("%s / %s: %s %s", case.group, case.name, case.outcome.kind, case.outcome.detail)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    totals = Counter(c.outcome.kind for c in cases)
    print("| group | case | outcome | detail |\n| --- | --- | --- | --- |")
    for case in cases:
        detail = case.outcome.detail.replace("|", "\\|").replace("\n", " ")[:220]
        print(f"| {case.group} | {case.name} | {case.outcome.kind} | {detail} |")
    print("\n" + ", ".join(f"{kind}: {n}" for kind, n in sorted(totals.items())) + f" ({len(cases)} cases, "
          f"{time.time() - started:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": " ".join(["scripts/probe_hardening.py", *sys.argv[1:]]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "totals": dict(totals),
            "cases": [{"group": c.group, "case": c.name, "outcome": c.outcome.kind, "detail": c.outcome.detail}
                      for c in cases]}, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
