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


def measures(c: dict[str, Any]) -> str:
    """What a claim's estimate is, for the tables' metric column: ``correct_prob, relative drop`` for a drop
    (the metric alone would read as if the estimate were the metric's value)."""
    return str(c.get("measures") or c.get("metric") or "")


def null_text(c: dict[str, Any]) -> str:
    """A claim's null-model estimates as tables show them next to the real one: ``mean [min, max], k/n pass``
    (and ``UNINFORMATIVE``); empty when the null-model control did not run."""
    null = c.get("null_control")
    if not null:
        return ""
    spread = f" [{num(null['min'])}, {num(null['max'])}]" if null["n"] > 1 else ""
    text = f"{num(null['mean'])}{spread}, {null['passes']}/{null['n']} pass"
    if null.get("not_applicable"):
        text += f", {len(null['not_applicable'])} n/a"
    return text + (", UNINFORMATIVE" if null["uninformative"] else "")


def null_detail(c: dict[str, Any]) -> str:
    """The null-model estimates of one claim, each copy's, as the claim's section lists them."""
    null = c.get("null_control")
    if not null:
        return ""
    per_copy = ", ".join(
        f"seed {null['seed'] + i}: {num(e) if v is not None else 'not applicable'}"
        + (f" ({v})" if v is not None else "")
        for i, (e, v) in enumerate(zip(null["estimates"], null["verdicts"], strict=True))
    )
    verdict = "uninformative" if null["uninformative"] else "informative"
    allowed = " (kept: allow_uninformative)" if null["uninformative"] and null.get("allow_uninformative") else ""
    return (f"Null model ({null['n']} re-initialised copies): mean {num(null['mean'])}, range "
            f"[{num(null['min'])}, {num(null['max'])}], {null['passes']}/{null['n']} pass; {verdict}{allowed}. "
            f"Per copy: {per_copy}. Real estimate: {num(c['estimate'])}.")


def outcome(claim: dict[str, Any]) -> str:
    """The colour a claim (or a comparison cell) shows: green when it came out as the file expects, red when not."""
    return {True: "pass", False: "fail", None: "inconclusive"}[claim["as_expected"]]


def headline(s: dict[str, Any]) -> str:
    """"6/7 claims as expected (1 refuted as expected, 2 known failures), 1 inconclusive"."""
    notes = [f"{s['refuted_as_expected']} refuted as expected"] if s.get("refuted_as_expected") else []
    notes += [f"{s['known_failures']} known failure(s) still failing"] if s.get("known_failures") else []
    text = f"{s['passed']}/{s['total']} claims as expected" + (f" ({', '.join(notes)})" if notes else "")
    return text + (f", {s['inconclusive']} inconclusive" if s["inconclusive"] else "")


def warning_lines(c: dict[str, Any]) -> list[str]:
    """A claim's warnings (numbers that cannot mean anything), each as ``file:line:col: warning: path: message``
    and its fix; none in a document from before warnings."""
    return [f"{w['where']}: warning: {w['path']}: {w['message']} (rule {w['rule']})\n  fix: {w['fix']}"
            for w in c.get("warnings", [])]


def interval_text(cell: dict[str, Any]) -> str:
    """``estimate [ci_low, ci_high]``."""
    return f"{num(cell['estimate'])} [{num(cell['ci_low'])}, {num(cell['ci_high'])}]"


def _differs(d: dict[str, Any]) -> bool:
    return bool(d.get("differs", d["excludes_zero"]))  # a document from before min_effect: excludes zero


def difference_text(d: dict[str, Any]) -> str:
    """A comparison's paired difference, starred where it differs: its interval excludes zero and its size is
    at least the claim's min effect; ``(below X)`` where the interval excludes zero but the size is under X."""
    if d["estimate"] is None:
        return "n/a"
    if d["ci_low"] is None:
        return f"{d['estimate']:+.4g} (no interval)"
    flag = f" {STAR}" if _differs(d) else f" (below {d['min_effect']:g})" if d["excludes_zero"] else ""
    if d["basis"] == "exact":
        return f"{d['estimate']:+.4g} (exact){flag}"
    if d["basis"] == "unpaired bootstrap":
        flag = " unpaired" + flag
    return f"{d['estimate']:+.4g} [{d['ci_low']:+.4g}, {d['ci_high']:+.4g}]{flag}"


def difference_header(d: dict[str, Any]) -> str:
    return f"{d['variant']} - {d['against']}"


CHANGED_HEADERS = ("claim", "variant", "verdict", "was", "estimate", "threshold")


def changed_rows(doc: dict[str, Any]) -> list[list[str]]:
    """One row per (claim, variant) whose verdict is not the reference's: the claim, the variant, its verdict,
    the reference's, the two estimates and the threshold."""
    claims = {c["id"]: c for c in doc["claims"]}
    rows = []
    for found in doc["summary"].get("changed", []):
        claim = claims[found["claim"]]
        now, was = claim["cells"][found["variant"]], claim["cells"][found["against"]]
        rows.append([found["claim"], found["variant"], found["to_mark"], f"{found['from_mark']} on {found['against']}",
                     f"{num(was['estimate'])} -> {num(now['estimate'])}", claim["threshold"]])
    return rows


def changed_title(doc: dict[str, Any]) -> str:
    n = len(doc["summary"].get("changed", []))
    if not n:
        return f"Verdicts that changed against {doc['reference']}: none."
    return f"Verdicts that changed against {doc['reference']}: {n}."


def cell_sentence(claim: dict[str, Any], variant: str) -> str:
    """What a variant found for a claim (its report's sentence), or why the claim does not apply to it."""
    cell = claim["cells"][variant]
    if cell["status"] != "run":
        return f"not applicable: {cell['reason']}"
    return f"{cell['mark']}: {cell.get('sentence', '')}".rstrip(": ")


def min_effect_text(doc: dict[str, Any]) -> str:
    """Which minimum effect the differences were judged against."""
    smallest = doc.get("min_effect") or 0.0
    own = {c["id"]: d.get("min_effect", 0.0) for c in doc["claims"] for d in c["differences"]}
    own = {cid: value for cid, value in own.items() if value != smallest}
    text = f"min effect {smallest:g}, from --min-effect" if smallest else "no min effect: any size counts"
    return text + (f"; claims' own min_effect: {', '.join(f'{k} {v:g}' for k, v in own.items())}" if own else "")


def footnotes(doc: dict[str, Any]) -> list[str]:
    """What a comparison's stars mean, the claims that differ, and why the n/a cells are n/a."""
    level = int(doc["statistics"]["confidence"] * 100)
    differing = ", ".join(f"{d['claim']} ({d['variant']})" for d in doc["summary"]["differing"]) or "none"
    lines = [
        f"{STAR} differs: the {level}% interval of the difference excludes zero (statistical significance) and the "
        f"difference is at least the min effect in size (practical significance; {min_effect_text(doc)}). "
        "The two are separate questions: with many sequences a negligible difference excludes zero; "
        "'(below X)' marks one whose interval excludes zero but whose size is under the min effect X. "
        "Intervals are paired on the same sequences; marked unpaired where the variants' datasets differ, "
        f"and exact for weight-based claims. Differ: {differing}."
    ]
    for c in doc["claims"]:
        for variant, cell in c["cells"].items():
            if cell["status"] != "run":
                lines.append(f"{c['id']} on {variant}: not applicable: {cell['reason']}")
    return lines
