"""Text from hypothesis files and models, made inert in Markdown.

Markdown passes raw HTML through, so a statement like ``<script>...</script>`` would run in any viewer
that renders the report; a ``|`` or a newline would break the table it sits in. Every piece of text
the Markdown renderers did not write themselves goes through one of these two functions.
"""

from __future__ import annotations

import re

_ESCAPES = str.maketrans({"\\": "\\\\", "&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|"})
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x85\u2028\u2029]+")
_BACKTICKS = re.compile(r"`+")
_HTML_CHARS = re.compile(r"[<>&]")
_PIPE_WITH_BACKSLASHES = re.compile(r"(\\*)\|")


def _one_line(text: str) -> str:
    return _LINE_BREAKS.sub(" ", text)


def md_text(text: object) -> str:
    """Plain text on one line: HTML characters as entities, ``|`` and ``\\`` backslash-escaped, so the text
    shows as written and cannot open a tag or end a table cell."""
    return _one_line(str(text)).translate(_ESCAPES)


def md_code(text: object, in_table: bool = False) -> str:
    """An inline code span around ``text``, with a fence longer than any backtick run inside so only the
    fence ends it; in a table cell a ``|`` still ends the cell (GitHub-flavoured Markdown), so it is escaped.

    Text holding ``<``, ``>`` or ``&`` comes back as ``md_text`` instead: entities are shown verbatim inside
    a code span, and a raw tag must not reach the file at all (a lax renderer or a scanner would act on it).
    """
    body = _one_line(str(text))
    if _HTML_CHARS.search(body):
        return md_text(body)
    if not body:
        return ""  # "``" would show as two backticks, not as an empty span
    if in_table:
        # The table scanner reads "\\x" as one escaped pair before it looks at code spans, so a backslash run
        # just before a "|" is doubled: otherwise "\\|" would read as an escaped backslash and a cell end.
        body = _PIPE_WITH_BACKSLASHES.sub(lambda m: m.group(1) * 2 + "\\|", body)
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"
