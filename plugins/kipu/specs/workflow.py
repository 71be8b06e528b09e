"""The workflow spec (one YAML/JSON file or one stored workflow) and its validation with located errors."""

from __future__ import annotations

from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, PrivateAttr, TypeAdapter, ValidationError, field_validator

from kipu.naming import WORKFLOW_SLUG_PATTERN
from kipu.specs.common import Strict
from kipu.specs.document import check_document_limits, short_value
from kipu.specs.errors import WorkflowSpecError
from kipu.specs.graph import StepGraph, build_graph
from kipu.specs.steps import STEP_TYPES, StepBase, StepSpec
from kipu.specs.targets import target_errors
from kipu.specs.triggers import TriggerSpec

WorkflowStatus = Literal["active", "inactive", "paused"]
_STEP = TypeAdapter(StepSpec)


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def format_errors(exc: ValidationError, prefix: str = "", skip: int = 0) -> list[str]:
    """Pydantic errors as ``prefix.field.path: message``; ``skip`` drops discriminator tags from the path."""
    lines = []
    for err in exc.errors(include_url=False):
        parts = tuple(err["loc"])[skip:]
        if len(parts) > 1 and parts[0] == "trigger" and parts[1] in ("poll", "webhook", "manual"):
            parts = (parts[0], *parts[2:])
        loc = _fmt_loc(parts)
        where = ".".join(p for p in (prefix, loc) if p)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        elif err["type"] in ("literal_error", "enum"):
            msg = f"{short_value(err['input'])} is not allowed; {msg[0].lower()}{msg[1:]}"
        lines.append(f"{where}: {msg}")
    return lines


class WorkflowHeader(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    slug: str | None = Field(default=None, pattern=WORKFLOW_SLUG_PATTERN)
    team: str | None = None
    status: WorkflowStatus = "inactive"
    timezone: str = "UTC"
    trigger: TriggerSpec
    steps: list[dict[str, Any]] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a valid IANA time zone name (e.g. 'Europe/Berlin')") from None
        return value


class WorkflowSpec(BaseModel):
    """A validated workflow: header fields, typed steps and their graph."""

    name: str
    description: str | None = None
    slug: str | None = None
    team: str | None = None
    status: WorkflowStatus = "inactive"
    timezone: str = "UTC"
    trigger: TriggerSpec
    steps: list[StepSpec]

    _graph: StepGraph | None = PrivateAttr(default=None)

    def graph(self) -> StepGraph:
        if self._graph is None:  # parse_workflow has usually built it already
            self._graph = build_graph(self.steps)[0]  # type: ignore[arg-type]
        return self._graph

    def step(self, key: str) -> StepBase:
        return next(s for s in self.steps if s.id == key)

    def to_document(self) -> dict[str, Any]:
        """The file form: what ``kipu workflow export`` writes and ``import`` reads."""
        return self.model_dump(mode="json", exclude_none=True, exclude_unset=True) | {
            "status": self.status,
            "timezone": self.timezone,
        }


def parse_workflow(data: Any) -> WorkflowSpec:
    """Validate a workflow document; raise WorkflowSpecError listing every problem found."""
    if not isinstance(data, dict):
        raise WorkflowSpecError([f"the document must be a mapping of workflow fields, got {type(data).__name__}"])
    check_document_limits(data)
    errors: list[str] = []
    name = data.get("name") if isinstance(data.get("name"), str) else None
    try:
        header = WorkflowHeader.model_validate(data)
    except ValidationError as exc:
        errors.extend(format_errors(exc))
        header = None
    raw_steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    steps: list[StepBase] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_steps):
        if not isinstance(raw, dict):
            errors.append(f"steps[{i}]: must be a mapping with 'id' and 'type'")
            continue
        label = f"steps[{i}] ({raw.get('type', '?')} '{raw.get('id', '?')}')"
        try:
            step = _STEP.validate_python(raw)
        except ValidationError as exc:
            errors.extend(format_errors(exc, prefix=label, skip=1 if raw.get("type") in STEP_TYPES else 0))
            continue
        if step.id in seen:
            errors.append(f"{label}.id: '{step.id}' is already used by steps[{seen[step.id]}]")
            continue
        seen[step.id] = i
        steps.append(step)
    graph = None
    if len(steps) == len(raw_steps):
        graph, graph_errors = build_graph(steps)
        errors.extend(graph_errors)
        if header is not None:
            errors.extend(target_errors(steps, header.trigger))
    if errors:
        raise WorkflowSpecError(errors, name)
    assert header is not None
    spec = WorkflowSpec(
        name=header.name,
        description=header.description,
        slug=header.slug,
        team=header.team,
        status=header.status,
        timezone=header.timezone,
        trigger=header.trigger,
        steps=steps,  # type: ignore[arg-type]
    )
    spec._graph = graph
    return spec
