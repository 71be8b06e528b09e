"""What a workflow asks of its target platforms, checked at validation against what each declares
(``kipu.platforms``): the publish options it reads, what it can publish, and whether it has caption rules."""

from __future__ import annotations

from typing import Any

from kipu import platforms
from kipu.platforms.options import problems_and_options
from kipu.specs.steps import AIRewriteStep, PublishStep, StepBase


def target_errors(steps: list[StepBase], trigger: Any) -> list[str]:
    """Every step that asks a platform for something it does not do, each error naming the step and the field."""
    errors: list[str] = []
    content_type = getattr(getattr(trigger, "filters", None), "content_type", None)
    for i, step in enumerate(steps):
        label = f"steps[{i}] ({step.type} '{step.id}')"  # type: ignore[attr-defined]
        if isinstance(step, AIRewriteStep) and platforms.get(step.config.target_platform).captions is None:
            errors.append(f"{label}.config.target_platform: {step.config.target_platform} is not published to")
        if not isinstance(step, PublishStep):
            continue
        config = step.config.model_dump(mode="json", exclude_unset=True)
        names = [t.platform for t in step.targets]
        for j, target in enumerate(step.targets):
            where = "platform" if j == 0 else f"additional_targets[{j - 1}].platform"
            spec = platforms.get(target.platform)
            if not spec.target:
                errors.append(f"{label}.{where}: Kipu cannot publish to {target.platform}")
                continue
            caps = spec.capabilities
            if step.config.schedule_at is not None and not caps.scheduling:
                errors.append(
                    f"{label}.config.schedule_at: {target.platform} cannot schedule a post; put a delay step before "
                    "publishing instead"
                )
            if content_type == "carousel" and not caps.carousel:
                errors.append(
                    f"{label}.{where}: {target.platform} cannot publish a carousel, and the trigger's filters only "
                    "let carousels through"
                )
            if spec.options is not None:
                problems, _ = problems_and_options(target.platform, config)
                errors += [f"{label}.config: {p}" for p in problems]
            elif _own_options(step.config.platform_options, target.platform):
                errors.append(
                    f"{label}.config.platform_options: {target.platform} takes no platform options"
                    + (
                        " (nest them under each platform's name when one step publishes to several)"
                        if len(names) > 1
                        else ""
                    )
                )
    return errors


def _own_options(options: dict[str, Any], platform: str) -> bool:
    """Whether ``options`` holds anything for ``platform``: nested under its name, or flat."""
    if not options:
        return False
    if platform in options:
        return bool(options[platform])
    return not set(options) & set(platforms.names())
