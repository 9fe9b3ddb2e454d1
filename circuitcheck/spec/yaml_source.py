"""Safe YAML reading that keeps every node's position.

Only the standard JSON-like tags are allowed; ``!!python/...`` and any other
tag is refused before anything is constructed. Duplicate keys are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from circuitcheck.errors import SourceLocation, SpecError

Path_ = tuple[str | int, ...]

_ALLOWED_TAGS = {
    "tag:yaml.org,2002:" + t for t in ("map", "seq", "str", "int", "float", "bool", "null")
}


@dataclass(frozen=True)
class SourceMap:
    """Where each value (and each mapping key) of a document starts."""

    file: str
    values: dict[Path_, SourceLocation]
    keys: dict[Path_, SourceLocation]

    def locate(self, path: Path_, *, key: bool = False) -> SourceLocation:
        """The position of ``path``, or of its closest located ancestor."""
        table = self.keys if key else self.values
        for cut in range(len(path), -1, -1):
            prefix = path[:cut]
            if prefix in table:
                return table[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return SourceLocation(self.file, 1, 1)


def _loc(file: str, node: yaml.Node) -> SourceLocation:
    return SourceLocation(file, node.start_mark.line + 1, node.start_mark.column + 1)


def read_yaml(path: Path) -> tuple[Any, SourceMap]:
    """Parse ``path`` into plain data plus a :class:`SourceMap`; raise SpecError on bad YAML."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(SourceLocation(file, 1, 1), "", f"cannot read file: {err}") from None
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as err:
        raise SpecError(SourceLocation(file, 1, 1), "", f"invalid YAML: {err}") from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = (
            SourceLocation(file, mark.line + 1, mark.column + 1)
            if mark
            else SourceLocation(file, 1, 1)
        )
        raise SpecError(where, "", f"invalid YAML: {err.problem or err}") from None
    except yaml.YAMLError as err:
        raise SpecError(SourceLocation(file, 1, 1), "", f"invalid YAML: {err}") from None
    finally:
        loader.dispose()
    if node is None:
        raise SpecError(
            SourceLocation(file, 1, 1),
            "",
            "the file is empty",
            "copy hypotheses/trigram.yaml as a starting point",
        )
    values: dict[Path_, SourceLocation] = {}
    keys: dict[Path_, SourceLocation] = {}
    _check(node, (), file, values, keys)
    data = yaml.SafeLoader("").construct_document(node)
    return data, SourceMap(file, values, keys)


def _check(
    node: yaml.Node,
    path: Path_,
    file: str,
    values: dict[Path_, SourceLocation],
    keys: dict[Path_, SourceLocation],
) -> None:
    values[path] = _loc(file, node)
    if node.tag not in _ALLOWED_TAGS:
        raise SpecError(
            _loc(file, node),
            ".".join(map(str, path)),
            f"YAML tag {node.tag!r} is not allowed",
            "hypothesis files hold plain data only: remove the tag",
        )
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, yaml.Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _ALLOWED_TAGS:
                raise SpecError(
                    _loc(file, key_node), ".".join(map(str, path)), "mapping keys must be plain strings"
                )
            key = key_node.value
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise SpecError(
                    _loc(file, key_node),
                    ".".join(map(str, path + (key,))),
                    f"duplicate key {key!r} (first defined on line {first})",
                    "keep one of the two entries",
                )
            seen[key] = key_node
            keys[path + (key,)] = _loc(file, key_node)
            _check(value_node, path + (key,), file, values, keys)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check(item, path + (index,), file, values, keys)
