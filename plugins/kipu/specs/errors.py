"""The error every workflow check raises: a list of problems, each naming its place."""

from __future__ import annotations


class WorkflowSpecError(ValueError):
    """A workflow that cannot run; ``errors`` lists every problem found, each with its location."""

    def __init__(self, errors: list[str], name: str | None = None) -> None:
        self.errors = errors
        self.workflow_name = name
        head = f"workflow {name!r} is invalid" if name else "workflow is invalid"
        super().__init__(head + ":\n" + "\n".join(f"  - {e}" for e in errors))
