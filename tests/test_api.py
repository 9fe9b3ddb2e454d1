"""The library entry points, ``circuitcheck.check`` and ``circuitcheck.compare``; a cheap ``import circuitcheck``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import circuitcheck
from tests.conftest import HYPOTHESES, REPO, VALID_FILE

TRIGRAM = HYPOTHESES / "trigram.yaml"


def test_import_is_cheap_and_the_public_names_resolve():
    code = (
        "import sys, circuitcheck\n"
        "assert 'torch' not in sys.modules and 'transformer_lens' not in sys.modules, 'it loaded torch'\n"
        "assert callable(circuitcheck.check) and callable(circuitcheck.compare)\n"
        "missing = [n for n in circuitcheck.__all__ if getattr(circuitcheck, n, None) is None]\n"
        "assert not missing, missing\n"
        "import circuitcheck.comparison\n"
        "assert callable(circuitcheck.compare), 'the comparison package shadowed circuitcheck.compare'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_an_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'circuitcheck' has no attribute 'chek'"):
        _ = circuitcheck.chek  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def trigram_report() -> circuitcheck.Report:
    return circuitcheck.check(TRIGRAM)


def test_check_returns_typed_verdicts_that_match_the_document(trigram_report):
    report = trigram_report
    assert report.name == "trigram" and report.exit_code == 0 and report.passed
    assert report.claims["T1"].verdict == "pass" and report.claims["T1"].as_expected is True
    assert list(report.claims) == [c["id"] for c in report.document["claims"]]
    for claim in report.document["claims"]:
        typed = report.claims[claim["id"]]
        assert (typed.verdict, typed.estimate, typed.ci_low, typed.ci_high, typed.sentence) == (
            claim["verdict"], claim["estimate"], claim["ci_low"], claim["ci_high"], claim["sentence"]
        )
        assert str(typed.threshold) == claim["threshold"]
    assert report.document["summary"] == report.summary.as_dict()
    assert str(report).startswith("trigram: 7/7 claims as expected")


def test_write_puts_the_heatmaps_in_the_html(trigram_report, tmp_path):
    md, js, html = trigram_report.write(tmp_path)
    assert (md.name, js.name, html.name) == ("trigram.md", "trigram.json", "trigram.html")
    assert 'aria-label="head 0.0: mean over 1000 sequences"' in html.read_text()
    assert json.loads(js.read_text())["claims"] == trigram_report.document["claims"]


def test_check_passes_max_rows_and_resume_to_the_engine(write_yaml, monkeypatch, tmp_path):
    import circuitcheck.report.report as report_module

    seen: list[dict] = []
    real = report_module.run_file

    def spy(plan, **kwargs):
        seen.append(kwargs)
        return real(plan, **kwargs)

    monkeypatch.setattr(report_module, "run_file", spy)
    path = write_yaml(VALID_FILE)
    small = circuitcheck.check(path, max_rows=7, resume=False, report_dir=tmp_path / "out")
    default = circuitcheck.check(path)
    assert [(s["max_rows"], s["resume"]) for s in seen] == [(7, False), (4096, True)]
    assert small.claims["T8"].estimate == default.claims["T8"].estimate
    assert (tmp_path / "out" / "h.json").exists()


def test_check_reports_bad_input_as_a_circuitcheck_error(write_yaml):
    path = write_yaml(VALID_FILE.replace("method: zero", "method: avg"))
    with pytest.raises(circuitcheck.SpecErrors, match=r"h\.yaml:\d+:\d+: claims\.0\.method"):
        circuitcheck.check(path)


def test_compare_returns_each_variants_report(tmp_path):
    found = circuitcheck.compare(TRIGRAM, ["trigram", "trigram-attn-only"], report_dir=tmp_path)
    assert found.name == "trigram-compare" and set(found.variants) == {"trigram", "trigram-attn-only"}
    assert found.variants["trigram"] is not None and found.variants["trigram"].claims["T1"].verdict == "pass"
    assert found.differing == [(d["claim"], d["variant"]) for d in found.document["summary"]["differing"]]
    assert (tmp_path / "trigram-compare.html").exists() and "claims x" in str(found)


def test_a_spec_built_in_python_is_checked_like_a_file():
    import yaml

    data = yaml.safe_load(VALID_FILE)
    from_dict = circuitcheck.check(data)
    assert from_dict.name == "spec" and from_dict.document["provenance"]["hypothesis_file"] == "<spec>"
    assert repr(from_dict) == "<Report spec: 1/1 claims as expected; exit code 0>"
    from circuitcheck.spec.hypothesis import load_hypothesis

    spec, _ = load_hypothesis(HYPOTHESES / "trigram.yaml")
    from_object = circuitcheck.check(spec)
    assert [(v.verdict, v.estimate) for v in from_object.claims.values()] == [
        (v.verdict, v.estimate) for v in circuitcheck.check(TRIGRAM).claims.values()
    ]
    hashes = {r.document["provenance"]["hypothesis_sha256"] for r in (from_object, from_dict)}
    assert len(hashes) == 2


def test_a_bad_spec_built_in_python_names_the_field():
    import yaml

    data = yaml.safe_load(VALID_FILE.replace("method: zero", "method: avg"))
    with pytest.raises(circuitcheck.SpecErrors, match=r"^<spec>:1:1: claims\.0\.method: "):
        circuitcheck.check(data)
