"""Safe YAML reading that keeps every node's position.

Only the standard JSON-like tags are allowed; ``!!python/...`` and any other
tag is refused before anything is constructed. Duplicate keys are refused.

Hypothesis files are small plain data, and reading one is bounded whatever it
holds: at most :data:`MAX_YAML_BYTES` bytes and :data:`MAX_YAML_NODES` values,
mappings and lists nested at most :data:`MAX_YAML_DEPTH` deep, numbers of at most
:data:`MAX_NUMBER_CHARS` characters, and no anchors or aliases (``&name`` /
``*name``: the "billion laughs"). Counts, nesting and anchors are checked on the
event stream, before an event reaches the (recursive) composer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from circuitcheck.errors import SourceLocation, SpecError

Path_ = tuple[str | int, ...]

MAX_YAML_BYTES = 1 << 20
"""The largest hypothesis file read, in bytes (1 MiB); the committed ones are under 6 KiB."""
MAX_YAML_DEPTH = 64
"""The deepest nesting of mappings and lists; the committed files need 5."""
MAX_YAML_NODES = 100_000
"""The most values (scalars, mappings, lists) in one file; the committed ones hold a few hundred."""
MAX_NUMBER_CHARS = 100
"""The longest number literal: longer ones would cost seconds to convert (``1:2:3:...``)."""

NO_ALIASES_FIX = "write the value out; anchors and aliases (&name / *name) are not allowed in hypothesis files"

_ALLOWED_TAGS = {
    "tag:yaml.org,2002:" + t for t in ("map", "seq", "str", "int", "float", "bool", "null")
}

_BOOL, _INT, _FLOAT = ("tag:yaml.org,2002:" + t for t in ("bool", "int", "float"))


@dataclass(frozen=True)
class SourceMap:
    """Where each value (and each mapping key) of a document starts."""

    file: str
    values: dict[Path_, SourceLocation]
    keys: dict[Path_, SourceLocation]
    booleans: dict[Path_, str] = field(default_factory=dict)
    """The text of each unquoted scalar YAML 1.1 reads as a boolean (``no``, ``on``, ...)."""
    numbers: dict[Path_, str] = field(default_factory=dict)
    """The text of each unquoted scalar YAML reads as a number (``0.0``, ``1.10``, ...), as written."""
    aliases: dict[Path_, Path_] = field(default_factory=dict)
    """Paths the loader made up, and where their value is written: a selection written inline
    (``claims.1.keys: {role: C}``) is validated and compiled as ``positions.<its text>``."""

    def written(self, path: Path_) -> Path_:
        """Where ``path`` is written in the file: itself, or, inside a made-up path, the place it stands for."""
        for alias, place in self.aliases.items():
            if path[: len(alias)] == alias:
                return place + path[len(alias):]
        return path

    def locate(self, path: Path_, *, key: bool = False) -> SourceLocation:
        """The position of ``path``, or of its closest located ancestor."""
        path = self.written(path)
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


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader that refuses anchors, aliases, deep nesting and too many values as each event is taken.

    The composer takes every event through :meth:`get_event`, so nothing past the
    first offending event is composed, and composing never recurses deeper than
    :data:`MAX_YAML_DEPTH`. The parser and scanner below it keep explicit stacks.
    """

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self.file = file
        self.depth = 0
        self.nodes = 0

    def get_event(self) -> yaml.Event:
        event = super().get_event()
        where = SourceLocation(self.file, event.start_mark.line + 1, event.start_mark.column + 1)
        if isinstance(event, yaml.NodeEvent):
            if event.anchor is not None:
                what = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
                raise SpecError(where, "", f"YAML {what}{event.anchor} is not allowed", NO_ALIASES_FIX)
            self.nodes += 1
            if self.nodes > MAX_YAML_NODES:
                raise SpecError(
                    where, "", f"the file holds more than {MAX_YAML_NODES} values, the limit for a hypothesis file",
                    "split the claims over several files; token data belongs in a dataset file ('kind: file')",
                )
        if isinstance(event, yaml.CollectionStartEvent):
            self.depth += 1
            if self.depth > MAX_YAML_DEPTH:
                raise SpecError(
                    where, "", f"the data is nested too deep: more than {MAX_YAML_DEPTH} levels of mappings and lists",
                    "flatten it; a hypothesis file needs a handful of levels",
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            self.depth -= 1
        return event


def _too_big(file: str) -> SpecError:
    return SpecError(
        SourceLocation(file, 1, 1), "",
        f"the file is over {MAX_YAML_BYTES} bytes, the limit for a hypothesis file",
        "split the claims over several files; token data belongs in a dataset file ('kind: file')",
    )


def read_yaml(path: Path) -> tuple[Any, SourceMap]:
    """Parse ``path`` into plain data plus a :class:`SourceMap`; raise SpecError on bad YAML."""
    file = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            raise _too_big(file)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(SourceLocation(file, 1, 1), "", f"cannot read file: {err}") from None
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    if len(text) > MAX_YAML_BYTES:
        raise _too_big(file)
    try:
        loader = _BoundedLoader(text, file)
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
    smap = SourceMap(file, {}, {})
    _check(node, (), smap)
    data = yaml.SafeLoader("").construct_document(node)
    return data, smap


def _check(node: yaml.Node, path: Path_, smap: SourceMap) -> None:
    """Refuse what plain data cannot hold, and record where each value starts."""
    file = smap.file
    smap.values[path] = _loc(file, node)
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
            # Every key of the format is a name: `off:` or `1:` means the text, not YAML 1.1's boolean or number.
            key_node.tag = "tag:yaml.org,2002:str"
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
            smap.keys[path + (key,)] = _loc(file, key_node)
            _check(value_node, path + (key,), smap)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check(item, path + (index,), smap)
    elif isinstance(node, yaml.ScalarNode):
        _check_scalar(node, path, smap)
        if node.style is None and node.tag == _BOOL:
            smap.booleans[path] = node.value
        elif node.style is None and node.tag in (_INT, _FLOAT):
            smap.numbers[path] = node.value


_NUMBERS = yaml.constructor.SafeConstructor()


def _check_scalar(node: yaml.ScalarNode, path: Path_, smap: SourceMap) -> None:
    """A number must be short, and readable (PyYAML resolves ``0x_`` as an int it cannot build)."""
    build = {_INT: _NUMBERS.construct_yaml_int, _FLOAT: _NUMBERS.construct_yaml_float}.get(node.tag)
    if build is None:
        return
    where, dotted = _loc(smap.file, node), ".".join(map(str, path))
    if len(node.value) > MAX_NUMBER_CHARS:
        raise SpecError(
            where, dotted, f"a number of {len(node.value)} characters is too long (at most {MAX_NUMBER_CHARS})",
            "write a shorter number, or quote it if it is meant as text",
        )
    try:
        build(node)
    except ValueError:
        raise SpecError(
            where,
            dotted,
            f"YAML cannot read {node.value!r} as a number",
            "write the number out, or quote it if it is text",
        ) from None
