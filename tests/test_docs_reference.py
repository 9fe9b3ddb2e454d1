"""Every claim kind documents itself (issue 17): fields, formula, interval, a worked example that validates, traps;
`circuitcheck docs KIND` prints it, and the documentation site builds from the same source with --strict."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from circuitcheck.cli import main
from circuitcheck.docs_reference import DOC_ATTRIBUTES, example_file, kind_markdown, missing_docs
from circuitcheck.plugins import load_extensions
from circuitcheck.spec.kinds import claim_kinds
from tests.conftest import REPO

load_extensions()
BUILT_IN = [k for k in claim_kinds.names() if claim_kinds.get(k).__module__.startswith("circuitcheck.claims.")]


def test_every_built_in_kind_is_found():
    assert len(BUILT_IN) >= 21 and "attention_mass" in BUILT_IN


@pytest.mark.parametrize("kind", BUILT_IN)
def test_every_built_in_kind_documents_itself(kind):
    cls = claim_kinds.get(kind)
    assert missing_docs(cls) == [], f"{cls.__name__} lacks {missing_docs(cls)} (see ClaimSpec in claims/base.py)"
    assert "estimate" in cls.formula, "the formula says what the estimate is"
    assert all(isinstance(t, str) and t.strip() for t in cls.traps)
    page = kind_markdown(kind)
    for heading in ("## Fields", "## Estimate", "## Interval", "## Example"):
        assert heading in page, heading
    assert f"kind: {kind}" in example_file(kind), "the example shows this kind"


def test_a_plug_in_kind_without_docs_is_reported_not_refused():
    # The contract does not require docs (plug-in kinds in tests/test_claim_contract.py have none);
    # missing_docs says what a kind lacks.
    from circuitcheck.claims.base import ClaimSpec

    assert missing_docs(ClaimSpec) == list(DOC_ATTRIBUTES)


def test_every_example_passes_validate(tmp_path, capsys):
    paths = []
    for kind in BUILT_IN:
        path = tmp_path / f"{kind}.yaml"
        path.write_text(example_file(kind))
        paths.append(str(path))
    code = main(["validate", *paths])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.count(": ok (") == len(BUILT_IN)


def test_docs_attention_mass_prints_fields_formula_and_example(capsys):
    assert main(["docs", "attention_mass"]) == 0
    out = capsys.readouterr().out
    for piece in ("Fields", "queries: selection name = required", "keys:", "more_than_roles",
                  "Formula (estimate):", "mass(q) = sum over key positions", "Interval:", "Sequences",
                  "Example", "kind: attention_mass", "version: 1", "Traps:"):
        assert piece in out, piece


def test_docs_without_a_kind_lists_kinds_metrics_and_datasets(capsys):
    assert main(["docs"]) == 0
    out = capsys.readouterr().out
    assert all(k in out for k in BUILT_IN)
    assert "top1_agreement" in out and "trigram" in out


def test_an_unknown_kind_is_exit_2_with_the_known_kinds(capsys):
    assert main(["docs", "attention_mas"]) == 2
    err = capsys.readouterr().err
    assert "unknown claim kind 'attention_mas'" in err and "attention_mass" in err and "ablation" in err
    assert "Traceback" not in err


def test_the_documentation_site_builds_with_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(REPO / ".venv" / "bin")) or shutil.which("mkdocs")
    if mkdocs is None:
        try:
            import mkdocs as _  # noqa: F401
        except ImportError:
            pytest.skip("mkdocs is not installed: pip install -e '.[dev]' installs mkdocs and mkdocs-material")
        command = [sys.executable, "-m", "mkdocs"]
    else:
        command = [mkdocs]
    site = tmp_path / "site"
    proc = subprocess.run(
        [*command, "build", "--strict", "--quiet", "-f", str(REPO / "mkdocs.yml"), "-d", str(site)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for kind in BUILT_IN:
        page = (site / "claims" / kind / "index.html").read_text()
        assert "Estimate" in page and "Example" in page, kind
    for page in ("metrics/kl/index.html", "datasets/trigram/index.html", "cli/index.html", "tour/index.html"):
        assert (site / page).is_file(), page
