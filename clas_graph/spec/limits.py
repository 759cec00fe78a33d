"""Bounds on what reading a spec may cost, checked while the text is parsed, before anything is expanded.

A spec is a few kilobytes; these limits are orders of magnitude above any real one and far below what could
exhaust a machine. YAML aliases are counted as they are composed (each node's expanded size from its children's,
an alias reusing its anchor's), so `a9: &a9 [*a8, *a8, ...]` is refused from the node graph in milliseconds,
never expanded. JSON has no aliases; its nesting is measured by a scan of the brackets before `json.loads`.
"""

from __future__ import annotations

import re

import yaml

MAX_SPEC_BYTES = 2 * 1024 * 1024
"""Largest spec file (and largest `--set` value) read: 2 MiB."""

MAX_SPEC_VALUES = 200_000
"""Most values (mappings, lists, scalars) one file or `--set` value may hold once its YAML aliases are expanded."""

MAX_SPEC_DEPTH = 64
"""Deepest nesting of mappings and lists (aliases expanded) in one file or `--set` value."""

MAX_INCLUDED_FILES = 64
"""Most files one spec may read through `include:` (each included file counts every time it is included)."""


class SpecLimitExceeded(Exception):
    """A limit above was exceeded; `line` is 1-based (None when unknown)."""

    def __init__(self, what: str, fix: str, line: int | None = None):
        self.what, self.fix, self.line = what, fix, line
        super().__init__(what)


_FIX_SIZE = "a spec is a few KB; move large data (masks, vectors, texts) into files the spec names"
_FIX_ALIASES = "use fewer or shallower YAML aliases (`*name`), or write the values out"
_FIX_DEPTH = "flatten the nesting; no spec field nests this deep"


def check_size(size: int) -> None:
    if size > MAX_SPEC_BYTES:
        raise SpecLimitExceeded(f"{size:,} bytes is larger than the {MAX_SPEC_BYTES:,}-byte limit of a spec",
                                _FIX_SIZE)


class BoundedComposer(yaml.composer.Composer):
    """PyYAML's composer, refusing a document whose alias-expanded size or depth exceeds the limits (and
    recursive aliases, which no spec value can be). Mixed into a SafeLoader subclass."""

    def compose_document(self):
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded values, expanded depth)
        self._open = 0
        return super().compose_document()

    def compose_node(self, parent, index):
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:
                raise SpecLimitExceeded(f"alias *{event.anchor} refers to a value that contains it (a loop)",
                                        "write the value out without referring to itself", line)
            node = super().compose_node(parent, index)
            self._account(node, self._sizes[id(node)], line)
            return node
        self._open += 1
        if self._open > MAX_SPEC_DEPTH:
            raise SpecLimitExceeded(f"values nest deeper than {MAX_SPEC_DEPTH} levels", _FIX_DEPTH, line)
        node = super().compose_node(parent, index)
        self._open -= 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        size, depth = 1, 1
        for child in children:
            child_size, child_depth = self._sizes[id(child)]
            size += child_size
            depth = max(depth, child_depth + 1)
        self._sizes[id(node)] = (size, depth)
        self._account(node, (size, depth), line)
        return node

    def _account(self, node, measure: tuple[int, int], line: int) -> None:
        size, depth = measure
        if size > MAX_SPEC_VALUES:
            raise SpecLimitExceeded(f"the YAML aliases here expand to {size:,} values, more than the "
                                    f"{MAX_SPEC_VALUES:,} a spec may hold", _FIX_ALIASES, line)
        if depth + self._open > MAX_SPEC_DEPTH:
            raise SpecLimitExceeded(f"with its YAML aliases expanded, the value here nests deeper than "
                                    f"{MAX_SPEC_DEPTH} levels", _FIX_ALIASES, line)


_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
# YAML adds single-quoted strings and comments. A quote inside a plain word (`don't`) may hide brackets from this
# scan; the composer's own depth check still catches what it misses.
_YAML_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\']|\'\')*\'|(?<!\S)#[^\n]*|[\[\]{}]', re.DOTALL)


def check_bracket_depth(text: str, *, json_text: bool) -> None:
    """Refuse `[`/`{` nesting deeper than the limit by a scan of the text, before a parser recurses into it
    (`json.loads`) or looks ahead through it (PyYAML's scanner tries each `[` as a possible key, quadratically in
    its 1024-character window)."""
    depth = 0
    for match in (_JSON_TOKENS if json_text else _YAML_TOKENS).finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_SPEC_DEPTH:
                raise SpecLimitExceeded(f"values nest deeper than {MAX_SPEC_DEPTH} levels", _FIX_DEPTH,
                                        text.count("\n", 0, match.start()) + 1)
        elif token in ("]", "}"):
            depth = max(depth - 1, 0)
