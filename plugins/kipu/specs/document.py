"""Reading workflow documents safely: one loader for YAML and JSON files, and limits that hold in linear time.

Every path that takes a workflow (the CLI, the API, the DAG factory) checks the same limits before validating, so a
hostile file fails in bounded time and memory with an error that names the limit (docs/workflows.md#limits).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from kipu.specs.errors import WorkflowSpecError

MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 20
MAX_VALUES = 20_000  # scalars, lists and mappings, counting every alias at its full size
MAX_LIST_ITEMS = 500
MAX_STEPS = 100
MAX_KEY_CHARS = 200


class DocumentError(WorkflowSpecError):
    """A document that cannot be read, or that breaks a limit; ``errors`` are located messages."""


def _line(node: Node | None) -> str:
    return f"line {node.start_mark.line + 1}" if node is not None and node.start_mark else "the document"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting bound while composing (no RecursionError) and no duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise DocumentError([f"line {mark.line + 1}: nested deeper than the limit of {MAX_DEPTH} levels"])
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: PyYAML names it below
                break
            if duplicate:
                raise DocumentError(
                    [f"{_line(key_node)}: the key {short_value(key)} appears more than once in a mapping"]
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_mapping)

# JSON's types only, as a workflow is stored as JSON. YAML 1.1's timestamps stay strings (the spec parses its own
# dates), its base-60 numbers are not numbers (they cost quadratic time to read), and the tags that make bytes, sets
# or dates (``!!binary``, ``!!set``, ``!!timestamp``, ...) are refused as unknown tags.
_INT, _FLOAT, _TIMESTAMP = (f"tag:yaml.org,2002:{t}" for t in ("int", "float", "timestamp"))
_BASE_60 = {
    _INT: r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+",
    _FLOAT: r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*",
}
_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, re.compile(regexp.pattern.replace(_BASE_60[tag], ""), regexp.flags) if tag in _BASE_60 else regexp)
        for tag, regexp in resolvers
        if tag != _TIMESTAMP
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag in ("binary", "timestamp", "omap", "pairs", "set"):
    del _Loader.yaml_constructors[f"tag:yaml.org,2002:{_tag}"]
MAX_NUMBER_CHARS = 40


def _short_number(node: Node) -> None:
    if len(node.value) > MAX_NUMBER_CHARS:
        raise DocumentError(
            [f"{_line(node)}: a number of {len(node.value)} characters, over the limit of {MAX_NUMBER_CHARS}"]
        )


def _construct_int(loader: _Loader, node: Node) -> int:
    _short_number(node)
    return loader.construct_yaml_int(node)  # type: ignore[no-untyped-call,no-any-return]


def _construct_float(loader: _Loader, node: Node) -> float:
    _short_number(node)
    return loader.construct_yaml_float(node)  # type: ignore[no-untyped-call,no-any-return]


_Loader.add_constructor(_INT, _construct_int)
_Loader.add_constructor(_FLOAT, _construct_float)


def _expanded_size(root: Node) -> int:
    """How many values the node graph stands for once every alias is expanded: linear in the number of nodes
    (each is sized once), whatever the expansion; an alias that contains itself is an error."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            children = _children(node)
            sizes[key] = min(1 + sum(sizes[id(c)] for c in children), MAX_VALUES + 1)
            active.discard(key)
            continue
        if key in sizes:
            continue
        if key in active:
            raise DocumentError([f"{_line(node)}: a YAML alias refers to a value that contains it (a cycle)"])
        active.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)
    return sizes[id(root)]


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def short_value(value: Any, limit: int = 60) -> str:
    """A value for a message, never its full expansion: containers by size, text cut."""
    if isinstance(value, dict):
        return f"a mapping of {len(value)} keys"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} items"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…'"


def _json_number(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        if len(text) > MAX_NUMBER_CHARS:
            raise DocumentError([f"a number of {len(text)} characters, over the limit of {MAX_NUMBER_CHARS}"])
        return kind(text)

    return parse


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DocumentError([f"the key {short_value(key)} appears more than once in a JSON object"])
        out[key] = value
    return out


def load_document(raw: bytes, name: str = "document") -> Any:
    """A YAML or JSON workflow file as Python data, within the limits; raises DocumentError naming what is wrong."""
    if len(raw) > MAX_FILE_BYTES:
        raise DocumentError([f"{name}: the file is {len(raw)} bytes, over the limit of {MAX_FILE_BYTES}"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError([f"{name}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"]) from None
    text = text.removeprefix("\ufeff")
    if name.endswith(".json"):
        try:
            data = json.loads(
                text,
                object_pairs_hook=_no_duplicates,
                parse_int=_json_number(int),
                parse_float=_json_number(float),
            )
        except RecursionError:
            raise DocumentError([f"{name}: nested deeper than the limit of {MAX_DEPTH} levels"]) from None
        except json.JSONDecodeError as exc:
            raise DocumentError([f"{name}: not valid JSON: {exc}"]) from None
        except DocumentError as exc:
            raise DocumentError([f"{name}: {e}" for e in exc.errors]) from None
    else:
        try:  # the reader refuses control characters as soon as it is built
            loader = _Loader(text)
        except yaml.YAMLError as exc:
            raise DocumentError([f"{name}: not valid YAML: {_yaml_message(exc)}"]) from None
        try:
            node = loader.get_single_node()
            if node is None:
                raise DocumentError([f"{name}: the file is empty"])
            if _expanded_size(node) > MAX_VALUES:
                raise DocumentError(
                    [f"{name}: the document expands to more than {MAX_VALUES} values (check its YAML aliases)"]
                )
            data = loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise DocumentError([f"{name}: not valid YAML: {_yaml_message(exc)}"]) from None
        except DocumentError as exc:
            raise DocumentError([f"{name}: {e}" for e in exc.errors]) from None
        finally:
            loader.dispose()
    if not isinstance(data, dict):
        raise DocumentError([f"{name}: the document must be a mapping of workflow fields, got {type(data).__name__}"])
    check_document_limits(data)
    return data


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}: {problem}" if mark is not None else str(problem)


def check_document_limits(data: Any) -> None:
    """Depth, size, list lengths and step count of a parsed document, in one linear walk; DocumentError if over.

    Shared values (YAML aliases) count at every place they appear, and a value that contains itself is refused."""
    errors: list[str] = []
    values = 0
    active: set[int] = set()
    stack: list[tuple[Any, str, int, bool]] = [(data, "", 1, False)]
    while stack:
        value, path, depth, leaving = stack.pop()
        if leaving:
            active.discard(id(value))
            continue
        values += 1
        if values > MAX_VALUES:
            errors.append(f"the document has more than {MAX_VALUES} values")
            break
        if isinstance(value, float) and not math.isfinite(value):  # .nan, .inf, 1e999: JSON has no such number
            errors.append(f"{path or 'document'}: {value} is not a finite number")
            break
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_DEPTH:
            errors.append(f"{path or 'document'}: nested deeper than the limit of {MAX_DEPTH} levels")
            break
        if id(value) in active:
            errors.append(f"{path or 'document'}: a value contains itself")
            break
        active.add(id(value))
        stack.append((value, path, depth, True))
        if isinstance(value, list):
            if len(value) > MAX_LIST_ITEMS:
                errors.append(f"{path or 'document'}: {len(value)} items, over the limit of {MAX_LIST_ITEMS}")
                break
            stack.extend((v, f"{path}[{i}]", depth + 1, False) for i, v in enumerate(value))
        else:
            for k, v in value.items():
                if not isinstance(k, str) or len(k) > MAX_KEY_CHARS:
                    errors.append(
                        f"{path or 'document'}: the key {short_value(k)} is not a text of at most "
                        f"{MAX_KEY_CHARS} characters"
                    )
                    break
                stack.append((v, f"{path}.{k}" if path else k, depth + 1, False))
            if errors:
                break
    steps = data.get("steps") if isinstance(data, dict) else None
    if not errors and isinstance(steps, list) and len(steps) > MAX_STEPS:
        errors.append(f"steps: {len(steps)} steps, over the limit of {MAX_STEPS}")
    if errors:
        raise DocumentError(errors)
