"""The step graph: steps run in order; a condition's listed steps run only on its branch, then flow rejoins."""

from __future__ import annotations

from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter

from kipu.specs.steps import ConditionStep, StepBase


@dataclass
class StepGraph:
    order: list[str]
    downstream: dict[str, list[str]] = field(default_factory=dict)
    # condition id -> (first task on the true branch, first on the false branch); None ends the run.
    branches: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    @property
    def upstream(self) -> dict[str, list[str]]:
        up: dict[str, list[str]] = {k: [] for k in self.order}
        for src, dsts in self.downstream.items():
            for dst in dsts:
                up[dst].append(src)
        return up

    @property
    def root(self) -> str | None:
        return self.order[0] if self.order else None

    def leaves(self) -> list[str]:
        return [k for k in self.order if not self.downstream.get(k)]


def build_graph(steps: list[StepBase]) -> tuple[StepGraph, list[str]]:
    """The graph of ``steps`` and every structural error, each naming the step and field."""
    errors: list[str] = []
    index = {s.id: i for i, s in enumerate(steps)}
    owner: dict[str, tuple[str, bool] | None] = {s.id: None for s in steps}

    def where(i: int, s: StepBase) -> str:
        return f"steps[{i}] ({s.type} '{s.id}')"  # type: ignore[attr-defined]

    for i, step in enumerate(steps):
        if isinstance(step, ConditionStep):
            for side, targets in ((True, step.config.if_true_steps), (False, step.config.if_false_steps)):
                fname = "if_true_steps" if side else "if_false_steps"
                for j, target in enumerate(targets):
                    loc = f"{where(i, step)}.config.{fname}[{j}]"
                    if target not in index:
                        errors.append(f"{loc}: '{target}' is not a step of this workflow")
                    elif index[target] <= i:
                        errors.append(
                            f"{loc}: '{target}' is steps[{index[target]}], at or before the condition; "
                            "branching back would make a cycle"
                        )
                    elif owner[target] is not None:
                        other = owner[target]
                        errors.append(f"{loc}: '{target}' already belongs to a branch of condition '{other[0]}'")
                    else:
                        owner[target] = (step.id, side)
    if errors:
        return StepGraph(order=[s.id for s in steps]), errors

    order = [s.id for s in steps]
    # Each scope (the top level, or one side of a condition) lists its steps in order, so the next step in a scope
    # is one lookup: linear in the number of steps, without recursion.
    scopes: dict[tuple[str, bool] | None, list[str]] = {}
    for key in order:
        scopes.setdefault(owner[key], []).append(key)
    position = {key: i for members in scopes.values() for i, key in enumerate(members)}

    def next_in_scope(key: str) -> str | None:
        while True:
            scope = owner[key]
            members = scopes[scope]
            if position[key] + 1 < len(members):
                return members[position[key] + 1]
            if scope is None:
                return None
            key = scope[0]  # the branch ends: continue after its condition

    graph = StepGraph(order=order, downstream={k: [] for k in order})
    for step in steps:
        if isinstance(step, ConditionStep):
            heads: list[str | None] = []
            for targets in (step.config.if_true_steps, step.config.if_false_steps):
                heads.append(min(targets, key=index.__getitem__) if targets else next_in_scope(step.id))
            graph.branches[step.id] = (heads[0], heads[1])
            for head in dict.fromkeys(h for h in heads if h):
                graph.downstream[step.id].append(head)
        else:
            nxt = next_in_scope(step.id)
            if nxt:
                graph.downstream[step.id].append(nxt)
    for i, step in enumerate(steps):
        if step.type in ("filter", "approval") and not graph.downstream[step.id]:  # type: ignore[attr-defined]
            errors.append(f"{where(i, step)}: a {step.type} step must be followed by a step it gates")  # type: ignore[attr-defined]
    try:
        tuple(TopologicalSorter(graph.upstream).static_order())
    except CycleError as exc:
        errors.append(f"steps: the branches form a cycle through {' -> '.join(exc.args[1])}")
    return graph, errors
