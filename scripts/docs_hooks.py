"""mkdocs hooks: write the generated reference pages before every build (`mkdocs build`, `mkdocs serve`).

The pages come from the code that defines what they describe (circuitcheck/docs_reference.py): one per
registered claim kind (its fields, formula, interval, worked example and traps, from its class), one per
metric (its docstring and direction), one per dataset kind (its docstring and fields), and the CLI reference
(every subcommand's --help), and the home page from README.md. They are written under docs/ (git-ignored:
index.md, cli.md, claims/, metrics/, datasets/) and added to the navigation. ``python scripts/docs_hooks.py``
writes them without building the site.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

GENERATED = ("claims", "metrics", "datasets")


def _write(path: Path, text: str) -> None:
    """Write only when the text changed, so that `mkdocs serve` does not rebuild in a loop."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def cli_markdown() -> str:
    from circuitcheck.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps --help to the terminal width; fix it for the page
    parser = build_parser()
    out = ["# Command line", "", "Exit codes: **0** every claim passed, **1** a claim failed, **2** invalid input "
           "(spec, model or data) or an invalid run, **3** nothing failed but a claim was inconclusive, **70** an "
           "internal bug (rerun with `--debug`).", "", "```text", parser.format_help().rstrip(), "```", ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        out += [f"## `circuitcheck {name}`", "", "```text", command.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def generate(docs: Path) -> dict[str, list[dict[str, str]]]:
    """Write every generated page under ``docs``; return the navigation sections (title -> pages)."""
    from circuitcheck import docs_reference as ref
    from circuitcheck.metrics import metrics
    from circuitcheck.plugins import load_extensions
    from circuitcheck.spec.kinds import claim_kinds, dataset_kinds

    load_extensions()
    sections: dict[str, list[dict[str, str]]] = {}
    kinds = claim_kinds.names()
    for kind in kinds:
        _write(docs / "claims" / f"{kind}.md", ref.kind_markdown(kind))
    index = ["# Claim kinds", "", "Every registered claim kind; each page gives its fields, the exact formula of its "
             "estimate, what its interval resamples, a worked example and its traps. `circuitcheck docs KIND` prints "
             "the same on the terminal. The [file format](../file-format.md#claim-kinds) has a one-line summary of "
             "each.", "", "| kind | asserts |", "|---|---|"]
    index += [f"| [`{k}`]({k}.md) | {ref.summary(claim_kinds.get(k))} |" for k in kinds]
    _write(docs / "claims" / "index.md", "\n".join(index) + "\n")
    sections["Claim kinds"] = [{"Overview": "claims/index.md"}] + [{k: f"claims/{k}.md"} for k in kinds]

    for name in metrics.names():
        _write(docs / "metrics" / f"{name}.md", ref.metric_markdown(name))
    index = ["# Metrics", "", "Each metric is a pure function of the logits at the scored positions, one score per "
             "position. Lower-is-better metrics (`loss`, `kl`) flip the sign of a drop, so that a positive drop is "
             "always worse.", "", "| metric | direction | what |", "|---|---|---|"]
    for name in metrics.names():
        m = metrics.get(name)
        direction = "higher is better" if m.higher_is_better else "lower is better"
        index.append(f"| [`{name}`]({name}.md) | {direction} | {m.description} |")
    _write(docs / "metrics" / "index.md", "\n".join(index) + "\n")
    sections["Metrics"] = [{"Overview": "metrics/index.md"}] + [{n: f"metrics/{n}.md"} for n in metrics.names()]

    for kind in dataset_kinds.names():
        _write(docs / "datasets" / f"{kind}.md", ref.dataset_markdown(kind))
    index = ["# Dataset kinds", "", "The `dataset:` block of a file picks one by `kind`; the model card's `task` block "
             "parameterises it, so a file evaluates a model on the data it was trained on.", "", "| kind | what |",
             "|---|---|"]
    index += [f"| [`{k}`]({k}.md) | {ref.summary(dataset_kinds.get(k))} |" for k in dataset_kinds.names()]
    _write(docs / "datasets" / "index.md", "\n".join(index) + "\n")
    sections["Dataset kinds"] = [{"Overview": "datasets/index.md"}] + [
        {k: f"datasets/{k}.md"} for k in dataset_kinds.names()
    ]

    readme = (REPO / "README.md").read_text().replace("](docs/", "](")
    _write(docs / "index.md", readme)
    _write(docs / "cli.md", cli_markdown())
    sections["Command line"] = [{"Command line": "cli.md"}]
    return sections


def on_config(config: Any, **kwargs: Any) -> Any:
    """mkdocs hook: generate the pages and append them to the navigation."""
    sections = generate(Path(config["docs_dir"]))
    nav = list(config.get("nav") or [])
    for title, pages in sections.items():
        nav.append({title: pages} if len(pages) > 1 else pages[0])
    config["nav"] = nav
    return config


if __name__ == "__main__":
    generate(REPO / "docs")
    print("generated pages under docs/")
