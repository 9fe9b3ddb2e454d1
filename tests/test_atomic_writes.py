"""Report files under faults and races: atomic replacement, one run id per report set, the write lock,
paths kept inside --report-dir, an unwritable folder refused before any model loads, and Markdown that
cannot carry HTML or break its tables."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from circuitcheck import atomic
from circuitcheck.atomic import exclusive_lock, probe_writable, write_atomic
from circuitcheck.cli import main
from circuitcheck.errors import CircuitcheckError
from circuitcheck.report import render
from circuitcheck.report.markdown_escape import md_code, md_text
from circuitcheck.report.render import markdown, report_paths, write_report_set, write_reports
from circuitcheck.verdict.baseline import update_baseline
from tests.conftest import HYPOTHESES, REPO
from tests.test_html import claim, document

HOSTILE = "<script>alert(1)</script> a | b\nsecond line & more"
META = re.compile(r'<meta name="circuitcheck-run-id" content="([0-9a-f]+)">')
TRAILER = re.compile(r"<!-- circuitcheck-run-id: ([0-9a-f]+) -->\n\Z")


def stray_files(folder: Path) -> list[str]:
    """Temporary and lock files a finished write must not leave behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def run_ids(folder: Path, stem: str) -> tuple[str, str, str]:
    """The run id each of ``<stem>.{md,html,json}`` carries (each file must parse whole)."""
    md = TRAILER.search((folder / f"{stem}.md").read_text())
    html = META.search((folder / f"{stem}.html").read_text())
    doc = json.loads((folder / f"{stem}.json").read_text())
    assert md and html, "a report without its run id"
    return md.group(1), html.group(1), doc["run_id"]


# --- write_atomic -------------------------------------------------------------------------------


def test_write_atomic_replaces_the_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    write_atomic(target, "new ✓")
    assert target.read_bytes() == "new ✓".encode()
    assert stray_files(tmp_path) == []


def test_write_atomic_gives_the_umask_mode_not_mkstemps_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        write_atomic(tmp_path / "r.md", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "r.md").stat().st_mode) == 0o644


@pytest.mark.parametrize("fails", ["replace", "fsync"])
def test_a_failed_write_keeps_the_old_file_byte_for_byte(tmp_path, monkeypatch, fails):
    target = tmp_path / "r.json"
    old = b'{"old": true}\n\x00 exact bytes'
    target.write_bytes(old)
    seen: list[str] = []

    def broken(*args: object) -> None:
        seen.extend(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))  # the new text was on disk
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, fails, broken)
    with pytest.raises(OSError, match="No space left") as err:
        write_atomic(target, "new " * 10_000)
    assert err.value.filename == str(target), "the error names the report, not the temporary file"
    assert seen, "the fault was injected after the temporary file existed"
    assert target.read_bytes() == old
    assert stray_files(tmp_path) == []


CHILD = """
import os, sys, time
from pathlib import Path
from circuitcheck import atomic

target, marker = Path(sys.argv[1]), Path(sys.argv[2])
real_fdopen = os.fdopen

class SlowFile:
    def __init__(self, f): self.f = f
    def __enter__(self): return self
    def __exit__(self, *exc): return self.f.__exit__(*exc)
    def flush(self): self.f.flush()
    def fileno(self): return self.f.fileno()
    def write(self, text):
        self.f.write(text[: len(text) // 2]); self.f.flush()
        marker.touch()  # half the new text is in the temporary file: now kill us
        time.sleep(60)

atomic.os.fdopen = lambda *a, **k: SlowFile(real_fdopen(*a, **k))
atomic.write_atomic(target, "new " * 250_000)
"""


def test_sigkill_in_the_middle_of_a_write_leaves_the_old_file(tmp_path):
    target, marker = tmp_path / "r.json", tmp_path / "started"
    old = b"old report\n" * 1000
    target.write_bytes(old)
    env = os.environ | {"PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(target), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert child.poll() is None and time.monotonic() < deadline, "the child never started writing"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert target.read_bytes() == old
    (partial,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert partial.stat().st_size > 0, "the child was killed with new text half written"


LOOP = """
import sys
from pathlib import Path
from circuitcheck.atomic import write_atomic

target = Path(sys.argv[1])
texts = ["A" * 3_000_000, "B" * 2_000_000]
print("ready", flush=True)
i = 0
while True:
    write_atomic(target, texts[i % 2])
    i += 1
"""


@pytest.mark.parametrize("delay", [0.05, 0.13, 0.31])
def test_sigkill_at_any_moment_leaves_the_old_or_a_new_file_never_a_torn_one(tmp_path, delay):
    target = tmp_path / "r.md"
    target.write_text("old")
    env = os.environ | {"PYTHONPATH": str(REPO)}
    with subprocess.Popen([sys.executable, "-c", LOOP, str(target)], env=env, stdout=subprocess.PIPE) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == b"ready\n"
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
    assert target.read_text() in {"old", "A" * 3_000_000, "B" * 2_000_000}


# --- one run id per report set, JSON last ------------------------------------------------------------


@pytest.fixture
def hostile_doc() -> dict:
    bad = claim("T1 | <b>x</b>", "pass", True, statement=HOSTILE, seed_figure="Fig <1> | 2", sentence="found\n| x |")
    return document([bad, claim("T2", "fail", False)], name="hostile")


def test_the_three_reports_share_one_new_run_id(tmp_path, hostile_doc):
    before = json.dumps(hostile_doc)
    written = write_reports(hostile_doc, tmp_path)
    assert [p.name for p in written] == ["hostile.md", "hostile.json", "hostile.html"]
    first = run_ids(tmp_path, "hostile")
    assert len(set(first)) == 1 and len(first[0]) == 32
    assert json.dumps(hostile_doc) == before, "the caller's document is not stamped in place"
    write_reports(hostile_doc, tmp_path)
    second = run_ids(tmp_path, "hostile")
    assert len(set(second)) == 1 and second[0] != first[0]
    assert stray_files(tmp_path) == []


def test_json_is_written_last(tmp_path, hostile_doc, monkeypatch):
    order: list[str] = []
    real = render.write_atomic
    monkeypatch.setattr(render, "write_atomic", lambda path, text: (order.append(path.suffix), real(path, text)))
    write_reports(hostile_doc, tmp_path)
    assert order == [".md", ".html", ".json"]


def test_a_failed_html_write_leaves_the_previous_json(tmp_path, hostile_doc, monkeypatch):
    write_reports(hostile_doc, tmp_path)
    old_json = (tmp_path / "hostile.json").read_bytes()
    real = render.write_atomic

    def no_html(path: Path, text: str) -> None:
        if path.suffix == ".html":
            raise OSError(5, "Input/output error", str(path))
        real(path, text)

    monkeypatch.setattr(render, "write_atomic", no_html)
    with pytest.raises(OSError):
        write_reports(hostile_doc, tmp_path)
    assert (tmp_path / "hostile.json").read_bytes() == old_json, "no JSON announces a run whose HTML is missing"
    assert stray_files(tmp_path) == []


def test_concurrent_writers_leave_the_set_of_one_run(tmp_path, monkeypatch):
    """Two writers alternate many times; a reader that takes the same lock always sees one run id in all
    three files, every file parses whole at every moment, and no lock or temporary file is left."""
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: None)  # durability is not under test here; speed is
    problems: list[str] = []
    done = threading.Event()

    def writer(tag: str) -> None:
        for i in range(100):
            run_id = f"{tag}{i:04d}" + "0" * 26
            texts = {
                "md": f"# r\n{'m' * 5000}\n{render.run_id_comment(run_id)}\n",
                "html": f'<html><head><meta name="circuitcheck-run-id" content="{run_id}">{"h" * 5000}</head></html>\n',
                "json": json.dumps({"run_id": run_id, "pad": "j" * 5000}) + "\n",
            }
            write_report_set(tmp_path, "r", texts)

    def reader() -> None:
        while not done.is_set():
            if not (tmp_path / "r.json").exists():
                continue
            with exclusive_lock(tmp_path / ".r.lock"):
                ids = run_ids(tmp_path, "r")
            if len(set(ids)) != 1:
                problems.append(f"mixed set {ids}")

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in ("a", "b")]
    check = threading.Thread(target=reader)
    check.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    check.join()
    assert problems == []
    assert len(set(run_ids(tmp_path, "r"))) == 1
    assert stray_files(tmp_path) == []


def test_exclusive_lock_excludes_other_processes(tmp_path):
    """Children log enter/leave inside the lock; any overlap would put two enters in a row."""
    script = (
        "import sys, time\nfrom pathlib import Path\nfrom circuitcheck.atomic import exclusive_lock\n"
        "log = Path(sys.argv[1])\n"
        "for _ in range(40):\n"
        "    with exclusive_lock(log.parent / '.x.lock'):\n"
        "        with log.open('a') as f: f.write('enter\\n')\n"
        "        time.sleep(0.001)\n"
        "        with log.open('a') as f: f.write('leave\\n')\n"
    )
    log = tmp_path / "log"
    env = os.environ | {"PYTHONPATH": str(REPO)}
    children = [subprocess.Popen([sys.executable, "-c", script, str(log)], env=env) for _ in range(3)]
    assert [c.wait(timeout=60) for c in children] == [0, 0, 0]
    assert log.read_text() == "enter\nleave\n" * 120
    assert stray_files(tmp_path) == []


def test_concurrent_baseline_updates_keep_every_file(tmp_path):
    path = tmp_path / "baseline.json"

    def doc(name: str) -> dict:
        return {"name": name, "provenance": {"checkpoint_sha256": "0" * 64},
                "claims": [{"id": "T1", "estimate": 0.5, "ci_low": 0.4, "ci_high": 0.6}]}

    def updater(tag: str) -> None:
        for i in range(30):
            update_baseline(path, [doc(f"{tag}{i}")])

    threads = [threading.Thread(target=updater, args=(tag,)) for tag in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(json.loads(path.read_text())["files"]) == 60, "a read-merge-write lost another run's update"
    assert stray_files(tmp_path) == []


# --- paths stay inside --report-dir ----------------------------------------------------------------


@pytest.mark.parametrize("stem", ["", ".", "..", "../x", "a/b", "/etc/x", "a\\b", "a\0b", ".hidden"])
def test_report_paths_refuses_a_name_that_is_not_one_plain_component(tmp_path, stem):
    with pytest.raises(CircuitcheckError, match="not a plain file name"):
        report_paths(tmp_path, stem, ["json"])


def test_report_paths_refuses_a_link_that_leads_outside(tmp_path):
    reports, outside = tmp_path / "reports", tmp_path / "outside.json"
    reports.mkdir()
    (reports / "r.json").symlink_to(outside)
    assert report_paths(reports, "r", ["md"]) == [reports / "r.md"]
    with pytest.raises(CircuitcheckError, match="outside the report folder"):
        report_paths(reports, "r", ["md", "json"])


def test_a_bad_name_writes_nothing(tmp_path, hostile_doc):
    with pytest.raises(CircuitcheckError):
        write_reports(hostile_doc | {"name": "../escape"}, tmp_path / "reports")
    assert list(tmp_path.iterdir()) == []


# --- an unwritable report folder fails before any model loads --------------------------------------------


@pytest.fixture
def no_model_loads(monkeypatch):
    """Loading a model now is a bug: an AssertionError is an internal error (exit 70), not the expected 2."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the report folder was checked")

    monkeypatch.setattr("circuitcheck.plan.compile.compile_file", boom)
    monkeypatch.setattr("circuitcheck.comparison.compare_file", boom)


TRIGRAM = str(HYPOTHESES / "trigram.yaml")


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["run", TRIGRAM, "--report-dir", "{bad}"], "--report-dir"),
        (["run", TRIGRAM, "--report-dir", "{ok}", "--junit", "{bad}/junit.xml"], "--junit"),
        (["baseline", TRIGRAM, "--out", "{ok}/b.json", "--report-dir", "{bad}"], "--report-dir"),
        (["baseline", TRIGRAM, "--out", "{bad}/b.json", "--report-dir", "{ok}"], "--out"),
        (
            ["compare", TRIGRAM, "--model", "trigram", "--model", "trigram-attn-only", "--report-dir", "{bad}"],
            "--report-dir",
        ),
    ],
    ids=["run", "junit", "baseline-reports", "baseline-out", "compare"],
)
def test_a_report_folder_under_a_file_exits_2_before_loading(tmp_path, capsys, no_model_loads, command, flag):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep")
    args = [a.format(bad=blocker / "reports", ok=tmp_path / "ok") for a in command]
    assert main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cannot write the ") and len(err.splitlines()) == 1
    assert f" into {blocker / 'reports'}: Not a directory; pass {flag} " in err and err.endswith("writable folder")
    assert blocker.read_text() == "keep"


def test_a_report_dir_that_is_a_file_is_refused_and_left_alone(tmp_path, capsys, no_model_loads):
    blocker = tmp_path / "h.yaml"
    blocker.write_text("keep")
    assert main(["run", TRIGRAM, "--report-dir", str(blocker), "--quiet"]) == 2
    assert "cannot write the reports into" in capsys.readouterr().err
    assert blocker.read_text() == "keep"


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root writes into a chmod 500 folder anyway, so it cannot be made unwritable"
)
def test_an_unwritable_report_dir_exits_2_before_loading(tmp_path, capsys, no_model_loads):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["run", TRIGRAM, "--report-dir", str(locked), "--quiet"]) == 2
    finally:
        locked.chmod(0o700)
    assert "Permission denied; pass --report-dir with a writable folder" in capsys.readouterr().err


def test_probe_creates_a_missing_folder_and_leaves_it_empty(tmp_path):
    probe_writable(tmp_path / "new" / "reports")
    assert list((tmp_path / "new" / "reports").iterdir()) == []


# --- Markdown cannot carry HTML or break a table ----------------------------------------------------------


def cells(row: str) -> list[str]:
    """Split a table row the way GitHub-flavoured Markdown does: a backslash escapes the next character."""
    return re.findall(r"(?:\\.|[^|\\])+", row.strip().strip("|"))


def unescape(text: str) -> str:
    return html.unescape(re.sub(r"\\(.)", r"\1", text))


def test_run_markdown_escapes_user_text(hostile_doc):
    md = markdown(hostile_doc)
    assert "<script>" not in md and "<b>" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "> &lt;script&gt;alert(1)&lt;/script&gt; a \\| b second line &amp; more" in md
    lines = md.splitlines()
    header = lines.index("| claim | kind | verdict | estimate | CI | threshold | metric |")
    claims_table = lines[header: header + 2 + len(hostile_doc["claims"])]
    assert [len(cells(row)) for row in claims_table] == [7] * len(claims_table)
    assert cells(claims_table[2])[0].strip() == "T1 \\| &lt;b&gt;x&lt;/b&gt;"


@given(st.text())
def test_md_text_is_one_inert_cell_that_reads_back_as_written(text):
    out = md_text(text)
    assert not set(out) & {"<", ">", "\n", "\r"}
    assert len(cells(f"| {out} |")) == 1
    assert unescape(out) == re.sub(r"[\r\n\v\f\x85\u2028\u2029]+", " ", text)


@given(st.text())
@example("\\|")
@example("a\\\\|b")
def test_md_code_is_one_inert_span_in_one_cell(text):
    out = md_code(text, in_table=True)
    assert not set(out) & {"<", ">", "\n", "\r"} and len(cells(f"| {out} |")) == 1
    if any(ch in text for ch in "<>&") or not text:
        assert out == md_text(text), "HTML characters (or nothing): plain escaped text, no code span"
        return
    fence = re.match(r"`+", out)
    assert fence and out.endswith(fence.group(0))
    inside = out[len(fence.group(0)): -len(fence.group(0))]
    assert all(len(run) < len(fence.group(0)) for run in re.findall(r"`+", inside)), "the span ends only at its fence"


def test_comparison_markdown_escapes_user_text():
    from circuitcheck.report.matrix import comparison_markdown

    cell = {"status": "run", "mark": "PASS", "estimate": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    doc = {
        "name": "c<i>", "hypothesis_file": "h|`.yaml", "variants": ["m<1>", "m2"], "reference": "m<1>",
        "statistics": {"method": "paired", "resamples": 10, "seed": 0, "confidence": 0.95},
        "summary": {"differing": []},
        "claims": [
            {
                "id": HOSTILE,
                "cells": {"m<1>": cell, "m2": cell | {"status": "n/a", "reason": "no <head> | here"}},
                "differences": [],
            }
        ],
    }
    md = comparison_markdown(doc)
    assert not re.search(r"<(?!!--)", md), "no tag but the run-id comment"
    row = next(line for line in md.splitlines() if line.startswith("| &lt;script"))
    assert len(cells(row)) == 3
