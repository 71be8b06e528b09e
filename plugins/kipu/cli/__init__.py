"""The kipu command. Run kipu COMMAND --help for each command's options and an example.

Exit codes: 0 done (plan: nothing to change); 1 refused or failed (invalid files, not found, a conflict, an
unhealthy connection); 2 plan only: there are changes; 3 Kipu cannot be used (the store is unreachable or not
migrated, no encryption key, the remote API is unreachable or the token is refused); 64 a usage error.
"""

from __future__ import annotations

import argparse
import sys

from kipu.cli.examples import EXAMPLES

EXIT_OK, EXIT_FAILED, EXIT_CHANGES, EXIT_UNAVAILABLE, EXIT_USAGE = 0, 1, 2, 3, 64


class Parser(argparse.ArgumentParser):
    """Usage errors exit 64 (2 means "plan has changes"); every command shows its example."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from kipu.cli import admin, history, notify, workflows

    p = Parser(prog="kipu", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    wf = sub.add_parser("workflow", help="workflows: files, the stored ones, runs by hand and dry runs")
    wf_sub = wf.add_subparsers(dest="sub", required=True, parser_class=Parser)
    conn = sub.add_parser("connection", help="connected accounts: add, list, health, refresh")
    conn_sub = conn.add_subparsers(dest="sub", required=True, parser_class=Parser)
    admin.register(sub, wf_sub, conn_sub)
    workflows.register(sub, wf_sub)
    history.register(sub, conn_sub)
    notify.register(sub)
    _add_examples(p, "kipu")
    return p


def _add_examples(parser: argparse.ArgumentParser, path: str) -> None:
    """Each leaf command's example from ``EXAMPLES``, shown at the end of its --help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                child.description = child.description or helps.get(name)
                _add_examples(child, f"{path} {name}")
            return
    example = EXAMPLES.get(path.removeprefix("kipu "))
    if example:
        parser.epilog = "example:\n" + "\n".join(f"  {line}" for line in example.splitlines())


# OAuth states and codes are URL-safe base64 and may start with "-", which
# argparse would take for an option; "--code=VALUE" keeps them values.
_VALUE_OPTIONS = frozenset({"--state", "--code"})


def _bind_option_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        value = next(it, None) if arg in _VALUE_OPTIONS else None
        out.append(arg if value is None else f"{arg}={value}")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(_bind_option_values(sys.argv[1:] if argv is None else argv))


def _logs_to_stderr() -> None:
    """Airflow logs to stdout; a command's stdout is its answer (an id, a table, JSON), so logs go to stderr."""
    import logging

    import airflow.settings  # noqa: F401  (configures logging)

    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _logs_to_stderr()
    try:
        return int(args.fn(args) or 0)
    except Exception as exc:
        from kipu.cli.client import ApiError, Unavailable
        from kipu.hooks.base import PlatformError
        from kipu.store.crypto import EncryptionKeyError

        if isinstance(exc, ApiError):
            print(f"kipu: {exc}", file=sys.stderr)
            return EXIT_FAILED
        if isinstance(exc, EncryptionKeyError | Unavailable):
            print(f"kipu: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        from kipu.billing.plans import PlanLimitReached

        if isinstance(exc, PlanLimitReached):
            exc.tell()
            print(f"kipu: {exc}", file=sys.stderr)
            return EXIT_FAILED
        if isinstance(exc, PlatformError):  # a platform's refusal (e.g. connect finish): its words, no traceback
            print(f"kipu: {exc}", file=sys.stderr)
            return EXIT_FAILED
        message = _store_problem(exc)
        if message is not None:
            print(f"kipu: {message}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        if isinstance(exc, ValueError):  # a bad argument (a role, a slug): the message names it
            print(f"kipu: {exc}", file=sys.stderr)
            return EXIT_USAGE
        raise


def _store_problem(exc: Exception) -> str | None:
    """What to tell the user when the store is not migrated or cannot be reached; None for other errors."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    if not isinstance(exc, OperationalError | ProgrammingError):
        return None
    text = str(exc.orig if getattr(exc, "orig", None) is not None else exc)
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return "the Kipu store is not migrated: run `kipu db upgrade` first"
    return f"the Kipu store cannot be used: {text.splitlines()[0][:200]}"
