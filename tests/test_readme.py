"""The documentation stays true: the README is a front page that links to the docs, the file format's
claim-kind table lists the registry, and the worked claim kind of docs/extending.md runs."""

from __future__ import annotations

import re
import sys
import types

import pytest

from circuitcheck.plugins import load_extensions
from circuitcheck.spec import hypothesis
from circuitcheck.spec.kinds import claim_kinds
from tests.conftest import REPO

README = (REPO / "README.md").read_text()
DOCS = REPO / "docs"


def section(text: str, title: str) -> str:
    """The text under ``title`` (a heading line), up to the next heading of the same or a higher level."""
    level = title.split(" ")[0]
    start = text.index(f"\n{title}\n") + len(title) + 2
    ends = [m.start() for m in re.finditer(rf"^#{{1,{len(level)}}} ", text[start:], re.MULTILINE)]
    return text[start : start + ends[0]] if ends else text[start:]


def test_the_readme_keeps_the_two_commands_and_links_every_docs_page():
    two = section(README, "## The two commands")
    assert "./tasks.sh suite" in two and "./tasks.sh test" in two
    hand_written = sorted(p.name for p in DOCS.glob("*.md") if p.name not in ("index.md", "cli.md"))
    for name in hand_written:
        assert f"](docs/{name})" in README, name
    for target in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (REPO / target).is_file(), target


def test_the_claim_kind_table_lists_exactly_the_registered_kinds():
    load_extensions()
    table = section((DOCS / "file-format.md").read_text(), "## Claim kinds")
    rows = [line for line in table.splitlines() if line.startswith("| [`")]
    listed = {re.match(r"\| \[`([a-z0-9_]+)`\]\(claims/\1\.md\)", row).group(1) for row in rows}  # type: ignore[union-attr]
    assert sorted(listed) == claim_kinds.names()


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


@pytest.fixture
def scratch_registry(monkeypatch):
    load_extensions()
    monkeypatch.setattr(claim_kinds, "_items", dict(claim_kinds._items))
    hypothesis.hypothesis_model.cache_clear()
    yield
    hypothesis.hypothesis_model.cache_clear()


def test_the_worked_claim_kind_registers_and_passes_its_own_test(monkeypatch, scratch_registry):
    kind_source, test_source = python_blocks((DOCS / "extending.md").read_text())
    module = types.ModuleType("readme_mean_metric")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(kind_source, module.__dict__)  # the README's own example
    assert claim_kinds.get("mean_metric") is module.MeanMetricClaim
    test_source = test_source.replace("from mean_metric import", "from readme_mean_metric import")
    exec(test_source, module.__dict__)
    module.test_mean_metric_matches_a_hand_computation()
