"""Plain-text pieces every renderer shares (terminal, Markdown, HTML; run and comparison reports).

They read report documents (the JSON form), so a renderer given a stored JSON draws what the run drew.
"""

from __future__ import annotations

from typing import Any

MARK = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}
STAR = "*"


def num(x: Any) -> str:
    """A number as reports show it (4 significant digits), ``n/a`` for an undefined one."""
    return "n/a" if x is None else f"{x:.4g}" if isinstance(x, float) else str(x)


def mark(c: dict[str, Any]) -> str:
    """A claim's verdict as shown: refuted and known-failure claims say whether that is what the file expects."""
    if c.get("expect") == "refuted" and c["verdict"] != "inconclusive":
        return "REFUTED (expected)" if c["verdict"] == "fail" else "HOLDS (expected refuted)"
    if c.get("expect") == "known_failure" and c["verdict"] != "inconclusive":
        return "FAIL (known)" if c["verdict"] == "fail" else "HOLDS (known failure)"
    return MARK[c["verdict"]]


def outcome(claim: dict[str, Any]) -> str:
    """The colour a claim (or a comparison cell) shows: green when it came out as the file expects, red when not."""
    return {True: "pass", False: "fail", None: "inconclusive"}[claim["as_expected"]]


def headline(s: dict[str, Any]) -> str:
    """"6/7 claims as expected (1 refuted as expected, 2 known failures), 1 inconclusive"."""
    notes = [f"{s['refuted_as_expected']} refuted as expected"] if s.get("refuted_as_expected") else []
    notes += [f"{s['known_failures']} known failure(s) still failing"] if s.get("known_failures") else []
    text = f"{s['passed']}/{s['total']} claims as expected" + (f" ({', '.join(notes)})" if notes else "")
    return text + (f", {s['inconclusive']} inconclusive" if s["inconclusive"] else "")


def interval_text(cell: dict[str, Any]) -> str:
    """``estimate [ci_low, ci_high]``."""
    return f"{num(cell['estimate'])} [{num(cell['ci_low'])}, {num(cell['ci_high'])}]"


def difference_text(d: dict[str, Any]) -> str:
    """A comparison's paired difference, starred where its interval excludes zero."""
    if d["estimate"] is None:
        return "n/a"
    if d["ci_low"] is None:
        return f"{d['estimate']:+.4g} (no interval)"
    flag = f" {STAR}" if d["excludes_zero"] else ""
    if d["basis"] == "exact":
        return f"{d['estimate']:+.4g} (exact){flag}"
    if d["basis"] == "unpaired bootstrap":
        flag = " unpaired" + flag
    return f"{d['estimate']:+.4g} [{d['ci_low']:+.4g}, {d['ci_high']:+.4g}]{flag}"


def difference_header(d: dict[str, Any]) -> str:
    return f"{d['variant']} - {d['against']}"


def footnotes(doc: dict[str, Any]) -> list[str]:
    """What a comparison's stars mean, the claims that differ, and why the n/a cells are n/a."""
    level = int(doc["statistics"]["confidence"] * 100)
    differing = ", ".join(f"{d['claim']} ({d['variant']})" for d in doc["summary"]["differing"]) or "none"
    lines = [
        f"{STAR} the {level}% interval of the difference excludes zero (paired on the same sequences; marked unpaired "
        f"where the variants' datasets differ; marked exact for weight-based claims: the difference is not zero). "
        f"Differ: {differing}."
    ]
    for c in doc["claims"]:
        for variant, cell in c["cells"].items():
            if cell["status"] != "run":
                lines.append(f"{c['id']} on {variant}: not applicable: {cell['reason']}")
    return lines
