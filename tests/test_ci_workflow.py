"""The example GitHub Actions workflow (examples/ci/github-actions.yml): it parses, its steps are named and do
what docs/ci.md says, and the circuitcheck command it runs is one the CLI accepts."""

from __future__ import annotations

import shlex

import pytest
import yaml

from circuitcheck.cli import build_parser
from tests.conftest import REPO

WORKFLOW = REPO / "examples" / "ci" / "github-actions.yml"


@pytest.fixture(scope="module")
def steps() -> dict[str, dict]:
    flow = yaml.safe_load(WORKFLOW.read_text())
    assert flow["name"] == "circuitcheck"
    assert set(flow.get("on", flow.get(True))) == {"push", "pull_request"}  # YAML 1.1 reads a bare `on` as True
    (job,) = flow["jobs"].values()
    named = {s["name"]: s for s in job["steps"]}
    assert len(named) == len(job["steps"]), "every step has a name, and no two the same"
    return named


def _suite_command(steps: dict[str, dict]) -> list[str]:
    line = next(x for x in steps["Run the suite with --junit"]["run"].splitlines() if x.startswith("circuitcheck "))
    return shlex.split(line)


def test_the_steps_install_restore_run_upload_and_fail_in_that_order(steps):
    assert list(steps) == [
        "Check out", "Set up Python", "Install circuitcheck", "Restore the result cache",
        "Run the suite with --junit", "Upload the HTML reports", "Fail on regressions against the baseline",
    ]
    assert "pip install circuitcheck" in steps["Install circuitcheck"]["run"]
    assert steps["Restore the result cache"]["uses"].startswith("actions/cache@")
    assert steps["Upload the HTML reports"]["uses"].startswith("actions/upload-artifact@")
    assert steps["Upload the HTML reports"]["if"] == "always()"  # the reports upload when the suite failed too
    assert "reports/*.html" in steps["Upload the HTML reports"]["with"]["path"]


def test_the_suite_command_is_one_the_cli_accepts_and_uses_the_restored_cache(steps):
    argv = _suite_command(steps)
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run"
    assert args.junit == "reports/junit.xml" and args.baseline == "baselines/main.json"
    assert args.cache == steps["Restore the result cache"]["with"]["path"]
    assert args.report_dir == "reports"


def test_the_job_fails_on_the_suites_exit_code_after_the_upload(steps):
    suite = steps["Run the suite with --junit"]
    assert suite["id"] == "suite" and 'echo "exit_code=$?" >> "$GITHUB_OUTPUT"' in suite["run"]
    last = steps["Fail on regressions against the baseline"]["run"]
    assert "steps.suite.outputs.exit_code" in last and 'exit "$code"' in last
