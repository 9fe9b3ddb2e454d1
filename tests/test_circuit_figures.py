"""The circuits of a hypothesis file drawn in the HTML report, and a minimality claim's edges in both reports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import circuitcheck
from circuitcheck.report.circuit_svg import CircuitDrawing, DrawnEdge, circuit_svg
from tests.conftest import HYPOTHESES

REPO = Path(__file__).resolve().parent.parent
DECOY = "1.1 -&gt; logits"


@pytest.fixture(scope="module")
def induction_reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    out = tmp_path_factory.mktemp("induction")
    circuitcheck.check(REPO / "hypotheses" / "induction.yaml", report_dir=out)
    return (out / "induction.html").read_text(), (out / "induction.md").read_text()


def svgs(html: str) -> dict[str, str]:
    """aria-label -> the <svg> element, for the circuit figures."""
    return {m.group(1): m.group(0) for m in re.finditer(r'<svg [^>]*aria-label="([^"]*circuit[^"]*)".*?</svg>', html)}


def test_each_circuit_is_drawn_with_its_edges_solid_and_the_rest_faint(induction_reports):
    html, _ = induction_reports
    figures = svgs(html)
    kept = {"induction": 7, "wrong-query": 7, "with-decoy": 8}
    for name, n in kept.items():
        svg = figures[f"circuit {name}: {n} of 42 edges"]
        assert svg.count('class="edge kept"') == n
        assert svg.count('class="edge removed"') == 42 - n
        assert 'class="edge redundant"' not in svg
    assert html.index("<h2>Circuits</h2>") < html.index("<h2>Claims</h2>")
    induction = figures["circuit induction: 7 of 42 edges"]
    for node in ("embed", "pos_embed", "0.0", "0.1", "1.0", "1.1", "logits"):
        assert f">{node}</text>" in induction


def test_a_minimality_claim_marks_its_redundant_edge(induction_reports):
    html, _ = induction_reports
    svg = svgs(html)["E3-redundant-decoy: circuit with-decoy, edges coloured by drop"]
    assert svg.count('class="edge kept"') == 7
    redundant = re.findall(r'<line class="edge redundant"[^>]*stroke-dasharray[^>]*><title>([^<]*)</title>', svg)
    assert len(redundant) == 1 and redundant[0].startswith(f"{DECOY}: redundant, drop 0")
    assert f"redundant: {DECOY}" in svg
    clean = svgs(html)["E3-minimality: circuit induction, edges coloured by drop"]
    assert clean.count('class="edge kept"') == 7 and "redundant" not in clean


def test_the_markdown_lists_each_edge_of_a_minimality_claim(induction_reports):
    _, md = induction_reports
    section = md[md.index("## E3-redundant-decoy"):]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "&gt;" in line]
    assert len(rows) == 8
    assert "| edge | drop | 95% interval | p (Holm) | edge verdict |" in section
    decoy = next(r for r in rows if r.startswith(f"| {DECOY} |"))
    assert decoy.endswith("| redundant |")
    assert all(r.endswith("| necessary |") for r in rows if r is not decoy)
    first = md[md.index("## E3-minimality"):md.index("## E3-redundant-decoy")]
    assert first.count("| necessary |") == 7 and "| redundant |" not in first


def test_svg_text_is_escaped():
    hostile = "<script>x</script>&"
    drawing = CircuitDrawing(
        f"circuit {hostile}", (("embed",), (hostile,), ("logits",)),
        (DrawnEdge(f"embed -> {hostile}", "embed", hostile, None, True, note=hostile),
         DrawnEdge(f"{hostile} -> logits", hostile, "logits", None, True, 0.0, True, hostile)),
    )
    svg = circuit_svg(drawing)
    assert "<script" not in svg and "&lt;script&gt;" in svg
    assert svg.count('class="edge redundant"') == 1 and svg.count('class="edge kept"') == 1


def test_a_comparison_draws_each_variant_s_circuits_and_minimality_figures():
    """Issue 11: the compare HTML draws the file's circuits in every variant's section, as the run report does."""
    from circuitcheck.api import check
    from circuitcheck.report.compare_html import _variant_section

    report = check(HYPOTHESES / "induction.yaml")
    circuits, figures = report.drawings()
    assert circuits and any(f for f in figures.values())
    section = _variant_section("induction", report.document, (circuits, figures))
    assert "<h2>Circuits on induction</h2>" in section or "<h2>Circuits" in section
    assert section.count("<svg") >= len(circuits) + 1, "every circuit, and the minimality claim's coloured circuit"
    bare = _variant_section("induction", report.document, None)
    assert "<h2>Circuits" not in bare
