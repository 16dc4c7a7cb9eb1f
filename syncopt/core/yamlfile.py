"""YAML for recipes and gates files: safe, with duplicate keys and deep nesting refused.

PyYAML's ``safe_load`` keeps the last of two equal keys (a recipe with ``train:`` twice silently
loses a stage) and composes nested collections recursively (20,000 brackets: RecursionError).
Both are reported here as ordinary YAML errors, with the line, so callers' one-line handling of
:class:`yaml.YAMLError` covers them.
"""

from __future__ import annotations

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

MAX_DEPTH = 64  # recipes and gates files nest 5 levels at most


class _StrictLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201 — PyYAML's signature
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):  # noqa: ANN001, ANN201
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: SafeLoader reports it
                continue
            if duplicate:
                raise ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load(text: str) -> object:
    """Parse one YAML document like ``yaml.safe_load``; duplicate keys and deep nesting are YAML errors."""
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
