"""JUnit XML for CI servers: one test case per claim, one suite per hypothesis file."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from circuitcheck.atomic import write_atomic


def junit_xml(docs: list[dict[str, Any]]) -> str:
    suites = ET.Element("testsuites", name="circuitcheck")
    for doc in docs:
        s = doc["summary"]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=doc["name"],
            tests=str(s["total"]),
            failures=str(s["failed"]),
            skipped=str(s["inconclusive"]),
            time=f"{doc['timing']['seconds']:.3f}",
        )
        for claim in doc["claims"]:
            case = ET.SubElement(suite, "testcase", classname=doc["name"], name=claim["id"])
            body = f"{claim['statement']}\n{claim['sentence']}"
            if claim["as_expected"] is False:
                ET.SubElement(case, "failure", message=claim["sentence"][:200]).text = body
            elif claim["as_expected"] is None:
                ET.SubElement(case, "skipped", message="inconclusive: " + claim["sentence"][:200]).text = body
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(docs: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, junit_xml(docs))  # a CI server polling the file never reads half of it
    return path
