"""A result cache keyed by provenance: rerun only the (file, model) pairs whose inputs changed.

The key is a sha256 over what decides a result: the hypothesis file's bytes, the checkpoint's bytes and its
card, the dataset's tokens (known after compiling, which builds the dataset but runs no forward pass), the
circuitcheck version, the options that shape a run (``max_rows``, ``resume``, the memory budget, the null-model
control), the device and dtype, and the baseline entry the verdicts were judged against. A change to any of them
is a new key: that pair reruns, every other pair reuses its stored report, and the reused report says so in its
provenance (``cache``), so the Markdown, HTML and JSON show it.

An entry is one JSON file: the report's document, plus its verdicts and drawings pickled. The cache folder is
something CI restores, so it is read with an unpickler that builds only circuitcheck's own classes and plain
containers: a tampered entry cannot run code, and one that cannot be read is a miss (the pair reruns).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import pickle
import shlex
from dataclasses import asdict, is_dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from circuitcheck.atomic import write_atomic
from circuitcheck.jobs.detached import DetachedReport, detach
from circuitcheck.report.provenance import tensor_sha256
from circuitcheck.run.execute import FileResult

if TYPE_CHECKING:
    from circuitcheck.jobs.options import RunOptions
    from circuitcheck.plan.compile import FilePlan
    from circuitcheck.report.report import Report
    from circuitcheck.verdict.baseline import Baseline

ENTRY_FORMAT = 1
"""Bumped when an entry's layout changes; entries of another format are misses."""

_PLAIN = {("builtins", n) for n in ("set", "frozenset", "tuple", "list", "dict", "float", "int", "str", "bool")}
_PLAIN |= {("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("builtins", "object")}


class _OwnClassesOnly(pickle.Unpickler):
    """Builds circuitcheck's own classes (dataclasses, pydantic models, enums) and plain containers; any other
    global (a function, ``os.system``, torch) is refused before it is looked up."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PLAIN:
            return super().find_class(module, name)
        if module == "circuitcheck" or module.startswith("circuitcheck."):
            found = super().find_class(module, name)
            # records only: a class with behaviour in its constructor (a cache, an executor) could be made to act
            if isinstance(found, type) and (is_dataclass(found) or issubclass(found, (Enum, BaseModel))):
                return found
        raise pickle.UnpicklingError(
            f"a cache entry may hold circuitcheck's classes only (records), not {module}.{name}"
        )


def _circuitcheck_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("circuitcheck")
    except PackageNotFoundError:  # not installed (run from a source tree): no version to key on
        return "not installed"


def _sha(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class ResultCache:
    """Stored reports in ``folder``, one ``<key>.json`` each."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def key(self, plan: FilePlan, options: RunOptions, baseline: Baseline | None = None) -> str:
        loaded = plan.loaded
        controls = getattr(plan.spec, "controls", None)
        parts = {
            "format": ENTRY_FORMAT,
            "circuitcheck": _circuitcheck_version(),
            "hypothesis_sha256": plan.source_sha256 or hashlib.sha256(plan.path.read_bytes()).hexdigest(),
            "checkpoint_sha256": loaded.checkpoint_sha256,
            "card": _sha(loaded.card),
            "dataset_tokens_sha256": tensor_sha256(plan.batch.tokens),
            "claims": sorted(c.claim_id for c in plan.claims),
            "options": asdict(options),
            "controls": None if controls is None else controls.model_dump(mode="json"),
            "device": str(getattr(loaded, "device", "cpu")),
            "dtype": str(getattr(loaded, "dtype", "")),
            "baseline": None if baseline is None else [str(baseline.path), baseline.estimates],
        }
        return _sha(parts)

    def _entry(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def load(self, key: str, argv: list[str] | None = None) -> Report | None:
        """The stored report of ``key`` (its provenance saying it was reused, and this run's command), or None."""
        try:
            stored = json.loads(self._entry(key).read_text())
            if stored.get("format") != ENTRY_FORMAT or stored.get("key") != key:
                return None
            raw = base64.b64decode(stored["objects"], validate=True)
            claims, summary, drawings, self_checks, n_rows, seconds = _OwnClassesOnly(io.BytesIO(raw)).load()
        except (OSError, ValueError, KeyError, TypeError, binascii.Error, pickle.UnpicklingError, EOFError):
            return None  # no entry, or one we cannot trust to be whole: the pair reruns
        doc = stored["document"]
        prov = doc["provenance"]
        prov["cache"] = {"reused": True, "key": key[:16], "stored": stored.get("stored")}
        if argv is not None:
            prov["command"] = shlex.join(argv)
        bare = FileResult(None, (), self_checks, n_rows, seconds)  # type: ignore[arg-type]  # detached: no plan
        return DetachedReport(doc["name"], claims, summary, doc, bare, drawings)

    def store(self, key: str, report: Report) -> Report:
        """Store ``report`` under ``key``; returns it with its provenance naming the cache entry."""
        doc = json.loads(json.dumps(report.document))
        doc["provenance"]["cache"] = {"reused": False, "key": key[:16]}
        kept = detach(report, keep_measurements=False)
        ran = kept.result
        objects = pickle.dumps(
            (kept.claims, kept.summary, kept.drawings(), ran.self_checks, ran.n_forward_rows, ran.seconds),
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        entry = {
            "format": ENTRY_FORMAT, "key": key, "name": report.name,
            "stored": datetime.now(UTC).isoformat(timespec="seconds"),
            "document": doc, "objects": base64.b64encode(objects).decode(),
        }
        write_atomic(self._entry(key), json.dumps(entry))
        return replace(report, document=doc)


def reused_from_cache(document: dict[str, Any]) -> bool:
    """Whether a report's result came from the cache (its provenance says so)."""
    cache = document.get("provenance", {}).get("cache")
    return isinstance(cache, dict) and cache.get("reused") is True
