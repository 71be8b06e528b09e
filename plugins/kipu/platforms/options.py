"""A publish step's config as one target platform reads it, typed once by the platform's options model.

The step's common fields the model declares (``title``, ``privacy``...), overridden by ``platform_options``: flat
when the step publishes to one platform, nested under each platform's name when it publishes to several. Any other
key is an error that names it and the keys the platform knows. Workflow validation and every publish use this one
reading, so a step that validates publishes with the options it validated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from kipu.hooks.errors import Rejected

# The publish step's own fields (specs.steps.PublishConfig): a platform that does not read one ignores it.
COMMON = frozenset(
    {
        "use_original_caption",
        "custom_caption",
        "schedule_at",
        "title",
        "privacy",
        "category_id",
        "tags",
        "made_for_kids",
        "share_to_feed",
        "platform_options",
    }
)


def _extras(platform: str, config: Mapping[str, Any]) -> tuple[str, Mapping[str, Any], list[str]]:
    from kipu.platforms import names

    extras = config.get("platform_options") or {}
    if not isinstance(extras, Mapping):
        return "platform_options", {}, [f"{platform} option 'platform_options' must be a mapping"]
    if platform in extras:
        nested = extras[platform]
        if not isinstance(nested, Mapping):
            return "", {}, [f"{platform} option 'platform_options.{platform}' must be a mapping"]
        return f"platform_options.{platform}", nested, []
    if set(extras) & set(names()):
        return "platform_options", {}, []  # nested for the step's other platforms; none for this one
    return "platform_options", extras, []


def problems_and_options(platform: str, config: Mapping[str, Any]) -> tuple[list[str], BaseModel | None]:
    """Every problem with ``config`` for ``platform``, and its options when there are none."""
    from kipu.platforms import get

    model: type[BaseModel] | None = get(platform).options
    if model is None:
        return [], None
    where, extras, problems = _extras(platform, config)
    fields = set(model.model_fields)
    known = ", ".join(model.model_fields)
    top = {k: v for k, v in config.items() if k in fields}
    problems += [f"{platform} option '{where}.{k}' is not known ({known})" for k in extras if k not in fields]
    problems += [f"{platform} option '{k}' is not known ({known})" for k in config if k not in fields | COMMON]
    origin = {k: f"{where}.{k}" for k in extras}
    try:
        parsed = model.model_validate({**top, **{k: v for k, v in extras.items() if k in fields}})
    except ValidationError as exc:
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else ""
            field = ".".join([origin.get(key, key), *(str(p) for p in err["loc"][1:])]).strip(".")
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{platform} option '{field}': {message}" if field else f"{platform} options: {message}")
        parsed = None
    return problems, (None if problems else parsed)


def parse(platform: str, config: Mapping[str, Any]) -> Any:
    """The options ``platform`` reads from ``config``; ``Rejected`` naming every bad field and the known keys."""
    problems, parsed = problems_and_options(platform, config)
    if problems:
        raise Rejected("; ".join(problems))
    return parsed
