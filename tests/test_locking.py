"""Two runs into one output (or one index folder) never both proceed; a lock left by a killed run is taken over."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fakes import KeywordAnnotator
from conftest import HashEncoder
from linker.annotate import annotate
from linker.build import build_index
from linker.errors import LinkerError
from linker.sources import Source

NOTES = Path(__file__).parent / "data" / "notes"


@pytest.fixture()
def holder(tmp_path: Path) -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Start a process that holds the lock of a target until it is killed; yields a starter."""
    procs: list[subprocess.Popen[str]] = []

    def hold(target: Path) -> subprocess.Popen[str]:
        script = ("import sys, pathlib\nfrom linker.locking import exclusive\n"
                  f"with exclusive(pathlib.Path({str(target)!r}), 'x'):\n"
                  "    print('held', flush=True)\n    sys.stdin.read()\n")
        proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"  # waits for the lock, no sleep
        procs.append(proc)
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_second_annotate_run_is_refused_naming_the_holder(tmp_path: Path, holder) -> None:
    output = tmp_path / "out.jsonl"
    proc = holder(output)
    with pytest.raises(LinkerError, match=rf"the output .*out.jsonl is in use by another run \(pid {proc.pid} on "):
        annotate(NOTES / "notes.jsonl", output, annotator=KeywordAnnotator(), processes=1, progress=False)
    assert not output.exists()  # nothing was written beside the holder
    proc.kill()  # killed: the OS drops its lock, and the next run takes it over
    proc.wait()
    stats = annotate(NOTES / "notes.jsonl", output, annotator=KeywordAnnotator(), processes=1, progress=False)
    ids = [line.split('"doc_id": ')[1].split(",")[0] for line in output.read_text().splitlines()]
    assert stats.annotated == len(ids) == len(set(ids)) > 0


def test_a_second_build_into_one_folder_is_refused(tmp_path: Path, holder, data_dir: Path) -> None:
    out = tmp_path / "index"
    proc = holder(out)
    with pytest.raises(LinkerError, match=rf"the index folder .*index is in use by another run \(pid {proc.pid}"):
        build_index(Source.open(data_dir / "mini.obo"), out, encoder=HashEncoder(), progress=False)
    proc.kill()
    proc.wait()
    assert (build_index(Source.open(data_dir / "mini.obo"), out, encoder=HashEncoder(), progress=False)
            / "meta.json").exists()
