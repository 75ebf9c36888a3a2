"""Reading definitions: the strict YAML loader and its caps, readable messages, and `parse_definition`."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from report_platform.delivery.destinations import DESTINATION_TYPES
from report_platform.reports.definition.fields import (
    MAX_DEFINITION_BYTES,
    MAX_LIST_ITEMS,
    MAX_NESTING_DEPTH,
    MAX_PROBLEMS_LISTED,
    PERIOD_KINDS,
    TOO_LARGE,
    DefinitionError,
    FieldError,
    shown,
)
from report_platform.reports.definition.known_names import KnownNames, known_name_errors
from report_platform.reports.definition.model import FILTER_MODELS, AegisFilters, Destination, ReportDefinition
from report_platform.reports.definition.period_models import Period
from report_platform.reports.definition.schedule_model import Schedule

_MODELS_BY_LOC: dict[tuple[str, ...], type[BaseModel]] = {
    (): ReportDefinition,
    ("schedule",): Schedule,
    ("filters",): AegisFilters,
    **{("period", k): m for k, m in zip(PERIOD_KINDS, Period.__args__[0].__args__, strict=True)},
    **{("destination", t): m for t, m in zip(DESTINATION_TYPES, Destination.__args__[0].__args__, strict=True)},
}


def _path(loc: tuple[Any, ...]) -> tuple[str, list[str | int]]:
    """Human field path from a pydantic location, dropping union tags."""
    parts: list[str | int] = []
    raw = tuple(loc)
    for i, part in enumerate(raw):
        prev = raw[i - 1] if i else None
        if prev == "period" and part in PERIOD_KINDS:
            continue
        if prev == "destination" and part in DESTINATION_TYPES:
            continue
        if isinstance(prev, int) and i >= 2 and raw[i - 2] == "destinations" and part in DESTINATION_TYPES:
            continue
        parts.append(part)
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text, parts


def _message(error: Mapping[str, Any], report_type: Any = None) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    value = error.get("input")
    ctx = error.get("ctx") or {}
    path, _ = _path(loc)
    if kind == "value_error" and isinstance(ctx.get("error"), FieldError):
        path = f"{path}.{ctx['error'].field_path}" if path else ctx["error"].field_path
    prefix = f"{path}: " if path else ""
    if kind == "missing":
        return f"{prefix}required field is missing"
    if kind == "extra_forbidden":
        parent = tuple(str(p) for p in loc[:-1])
        if len(parent) == 3 and parent[0] == "destinations":  # destinations[i].<type>: as destination
            parent = ("destination", parent[2])
        filters_of = FILTER_MODELS.get(report_type) if parent == ("filters",) else None
        model = filters_of or _MODELS_BY_LOC.get(parent)
        allowed = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        listing = f" (allowed: {', '.join(allowed)})" if allowed else ""
        if filters_of is not None:
            return f"{prefix}{report_type} reports have no {shown(str(loc[-1]))} filter{hint}{listing}"
        return f"{prefix}unknown field{hint}{listing}"
    if kind == "value_error":
        return f"{prefix}{ctx['error']}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = PERIOD_KINDS if loc[-1:] == ("period",) else DESTINATION_TYPES
        name = "kind" if tags is PERIOD_KINDS else "type"
        where = f"{path}.{name}: "
        if kind == "union_tag_not_found":
            return f"{where}required field is missing (one of {', '.join(tags)})"
        return f"{where}must be one of {', '.join(tags)}, got {shown(ctx.get('tag'))}"
    if kind == "literal_error":
        return f"{prefix}must be one of {ctx.get('expected')}, got {shown(value)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{prefix}must be a mapping of fields, got {shown(value)}"
    if kind in ("string_type", "str_type"):
        return f"{prefix}must be text, got {shown(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"{prefix}must be true or false, got {shown(value)}"
    if kind in ("list_type",):
        return f"{prefix}must be a list, got {shown(value)}"
    if kind.startswith("int_"):
        return f"{prefix}must be a whole number, got {shown(value)}"
    return f"{prefix}{str(error.get('msg', kind)).rstrip('.')}, got {shown(value)}"


_YAML_TAG = "tag:yaml.org,2002:"


class _Refused(yaml.MarkedYAMLError):
    """Well-formed YAML that a definition may not use, at a place in the text."""


class _PythonParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """PyYAML's own parser, for an installation without libyaml."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


# libyaml's parser (in PyYAML's wheels) reads a 256 KiB file about 20 times faster than the
# Python one; only parsing is delegated: nodes are composed in Python, where the checks below are.
try:
    from yaml.cyaml import CParser as _Parser
except ImportError:  # PyYAML built without libyaml
    _Parser = _PythonParser


class _Loader(yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver, _Parser):
    """Strict YAML 1.1 for definitions: times and dates stay text, and what a definition never needs is refused.

    Refused, each naming its line: duplicate keys (no silent "last one wins"), anchors and aliases
    (a 600-byte "billion laughs" expands to billions of values), merge keys, explicit tags, keys
    that are not plain names, numbers too long to convert, and more than MAX_NESTING_DEPTH levels
    of nesting (the composer recurses once per level).
    """

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            raise _Refused(
                problem="anchors and aliases (&name, *name) are not allowed; write each value out",
                problem_mark=event.start_mark,
            )
        tag = getattr(event, "tag", None)
        if tag is not None:
            shown = "!!" + tag.removeprefix(_YAML_TAG) if tag.startswith(_YAML_TAG) else tag
            raise _Refused(
                problem=f"tags such as {shown!r} are not allowed; quote a value to make it text",
                problem_mark=event.start_mark,
            )
        if not isinstance(event, yaml.CollectionStartEvent):
            return super().compose_node(parent, index)
        if self._depth >= MAX_NESTING_DEPTH:
            raise _Refused(problem=f"nested more than {MAX_NESTING_DEPTH} levels deep", problem_mark=event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# PyYAML reads 12:30:00 as the base-60 integer 45000 and 2026-01-01 as a date; report
# definitions want the text, so drop the sexagesimal int/float and timestamp resolvers. The
# merge resolver goes too: a plain `<<` value is text, and a `<<` key is refused below.
_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in (_YAML_TAG + "timestamp", _YAML_TAG + "merge")
        and not (tag.endswith((":int", ":float")) and ":[0-5]?[0-9]" in regexp.pattern)
    ]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(
        r"""^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$""",
        re.X,
    ),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    first_lines: dict[Any, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise _Refused(
                problem="a key must be a plain name, not a list or a mapping", problem_mark=key_node.start_mark
            )
        if key_node.value == "<<" and not key_node.style:  # plain: None from PyYAML's parser, "" from libyaml
            raise _Refused(
                problem="merge keys (<<) are not allowed; write each field out", problem_mark=key_node.start_mark
            )
        key = loader.construct_object(key_node)
        if key in first_lines:
            raise _Refused(
                problem=f"duplicate key {shown(key_node.value)} (first on line {first_lines[key]})",
                problem_mark=key_node.start_mark,
            )
        first_lines[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node)


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    try:
        return loader.construct_yaml_int(node)
    except ValueError:  # Python refuses to convert more than 4300 digits
        raise _Refused(
            problem=f"a number of {len(node.value)} digits is too long", problem_mark=node.start_mark
        ) from None


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(_YAML_TAG + "int", _construct_int)


def _load_yaml(text: str) -> Any:
    # Characters first: cheap, and never more than the UTF-8 bytes.
    if len(text) > MAX_DEFINITION_BYTES:
        raise DefinitionError([TOO_LARGE])
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from a JSON "\ud800" escape
        raise DefinitionError([f"{_line_column(text[: exc.start])}: not valid text ({exc.reason})"]) from None
    if size > MAX_DEFINITION_BYTES:
        raise DefinitionError([TOO_LARGE])
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except yaml.reader.ReaderError as exc:  # its own text spans two lines and counts characters, not lines
        # libyaml counts the offset in UTF-8 bytes, PyYAML's reader in characters.
        offset = exc.position
        before = (
            text.encode("utf-8")[:offset].decode("utf-8", "ignore") if _Parser is not _PythonParser else text[:offset]
        )
        raise DefinitionError([f"{_line_column(before)}: {exc.reason}"]) from None
    except _Refused as exc:
        raise DefinitionError([f"{_where(exc.problem_mark, text)}: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if "maximum nesting depth" in problem:  # libyaml's own limit (1000), met when it reads ahead
            raise DefinitionError([f"{_where(mark, text)}: nested more than {MAX_NESTING_DEPTH} levels deep"]) from None
        where = f" at {_where(mark, text)}" if mark else ""
        raise DefinitionError([f"invalid YAML{where}: {problem}"]) from None
    finally:
        loader.dispose()


def _line_column(before: str) -> str:
    """`line L, column C` of the character that follows the text `before`."""
    line = before.count("\n") + 1
    column = len(before) - before.rfind("\n")
    return f"line {line}, column {column}"


def _where(mark: yaml.Mark, text: str) -> str:
    """`line L, column C` of a parser's mark, as PyYAML counts them.

    libyaml puts the end of the input on a line of its own; such a mark becomes the text's end.
    """
    end = (text.count("\n"), len(text) - (text.rfind("\n") + 1))
    line, column = min((mark.line, mark.column), end)
    return f"line {line + 1}, column {column + 1}"


def _shape_errors(data: Mapping[str, Any]) -> list[str]:
    """The first cap `data` breaks: a list too long, nesting too deep, too much in all; else [].

    Iterative and stopping at the first problem, so it costs at most the caps, whatever `data` is
    (a mapping may come from JSON or from Python, where it may even contain itself).
    """
    budget = MAX_DEFINITION_BYTES  # text counts its characters, anything else 1
    pending: list[tuple[Any, str, int]] = [(data, "", 1)]
    while pending:
        value, path, depth = pending.pop()
        budget -= len(value) if isinstance(value, str) else 1
        if budget < 0:
            return [TOO_LARGE]
        if not isinstance(value, Mapping | list | tuple):
            continue
        if depth > MAX_NESTING_DEPTH:
            return [f"{path}: nested more than {MAX_NESTING_DEPTH} levels deep"]
        if isinstance(value, Mapping):
            for key, item in value.items():
                budget -= len(key) if isinstance(key, str) else 1
                if budget < 0:
                    return [TOO_LARGE]
                pending.append((item, f"{path}.{key}" if path else str(key), depth + 1))
        elif len(value) > MAX_LIST_ITEMS:
            return [f"{path}: at most {MAX_LIST_ITEMS} items are allowed, got {len(value)}"]
        else:
            pending.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
    return []


def _definition_mapping(data: Mapping[str, Any] | str) -> Mapping[str, Any]:
    """`data` (YAML text is read first) as a mapping within the caps, or DefinitionError."""
    if isinstance(data, str):
        data = _load_yaml(data)
        if data is None:
            raise DefinitionError(["the definition is empty"])
    if not isinstance(data, Mapping):
        raise DefinitionError([f"the definition must be a mapping of fields (name:, type:, ...), got {shown(data)}"])
    too_big = _shape_errors(data)
    if too_big:
        raise DefinitionError(too_big)
    return data


def parse_definition(data: Mapping[str, Any] | str, known: KnownNames | None = None) -> ReportDefinition:
    """Validate a definition (a mapping, or YAML text); raise DefinitionError listing every problem.

    The one entry point for every surface: YAML files (CLI) and mappings (JSON of the HTTP API, the
    registry) meet the same caps and rules. With `known`, also check the names of the deployment
    (workspace/organization, Aegis workflows, campaigns, connections).
    """
    data = _definition_mapping(data)
    errors: list[str] = []
    definition: ReportDefinition | None = None
    try:
        definition = ReportDefinition.model_validate(dict(data))
    except ValidationError as exc:
        errors.extend(_message(e, data.get("type")) for e in exc.errors(include_url=False))
    if known is not None:
        errors.extend(known_name_errors(data, known))
    if errors or definition is None:
        problems = list(dict.fromkeys(errors))  # the same problem found twice is said once
        if len(problems) > MAX_PROBLEMS_LISTED:
            more = len(problems) - MAX_PROBLEMS_LISTED
            problems = [*problems[:MAX_PROBLEMS_LISTED], f"... and {more} more problems"]
        raise DefinitionError(problems)
    return definition


def read_definition_file(path: str | Path) -> dict[str, Any]:
    """The fields of a YAML definition file as written, read strictly and within the caps, not yet validated.

    For callers that need to know which fields the file names (an update leaves out what it does not
    name); validate the result with `parse_definition`. Messages are prefixed with the file name.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            # One byte past the cap is enough to refuse: a huge file is never read whole.
            raw = fh.read(MAX_DEFINITION_BYTES + 1)
    except OSError as exc:
        raise DefinitionError([f"{path}: cannot read the file ({exc})"]) from None
    if len(raw) > MAX_DEFINITION_BYTES:
        raise DefinitionError([f"{path}: {TOO_LARGE}"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(
            [f"{path}: cannot read the file (not UTF-8 text: {exc.reason} at byte {exc.start})"]
        ) from None
    try:
        return dict(_definition_mapping(text))
    except DefinitionError as exc:
        raise DefinitionError([f"{path}: {m}" for m in exc.errors]) from None


def load_definition_file(path: str | Path, known: KnownNames | None = None) -> ReportDefinition:
    """Read and validate a YAML definition file; messages are prefixed with the file name."""
    data = read_definition_file(path)
    try:
        return parse_definition(data, known)
    except DefinitionError as exc:
        raise DefinitionError([f"{Path(path)}: {m}" for m in exc.errors]) from None
