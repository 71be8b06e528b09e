"""The platform registry: every package under ``kipu.platforms`` that declares ``PLATFORM`` is a platform.

Nothing else lists platforms. The specs' names, caption limits, OAuth apps, connection types and webhook routes are
derived from here, and ``hook_class`` imports a platform's hook only when it is first used.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from kipu.hooks.errors import Rejected
from kipu.platforms.spec import Capabilities, Platform

if TYPE_CHECKING:
    from kipu.store.models import Connection

__all__ = [
    "Capabilities",
    "Platform",
    "PlatformNotSupported",
    "View",
    "account_hook",
    "all_platforms",
    "get",
    "has_tokens",
    "hook_class",
    "load",
    "names",
    "names_with_webhooks",
    "source_hook",
    "target_hook",
]


class PlatformNotSupported(Rejected):
    """No platform of that name, or not in that role."""


@cache
def all_platforms() -> dict[str, Platform]:
    """Every platform package's ``PLATFORM``, by name (packages without one, like shared Graph code, are skipped)."""
    found: dict[str, Platform] = {}
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not module.ispkg:
            continue
        declared = getattr(importlib.import_module(f"{__name__}.{module.name}"), "PLATFORM", None)
        if isinstance(declared, Platform):
            found[declared.name] = declared
    return found


def get(name: str) -> Platform:
    platforms = all_platforms()
    if name in platforms:
        return platforms[name]
    for platform in platforms.values():
        if name in platform.aliases:
            return platform
    raise PlatformNotSupported(f"Kipu has no platform {name!r}; known: {', '.join(sorted(platforms))}")


def names(**wanted: Any) -> tuple[str, ...]:
    """Platform names, optionally only those whose fields equal ``wanted`` (``names(connect="oauth")``)."""
    return tuple(
        p.name for p in all_platforms().values() if all(getattr(p, key) == value for key, value in wanted.items())
    )


class View(Mapping[str, Any]):
    """One field of every platform that declares it (``view("captions")``, ``view("oauth")``), read when used."""

    def __init__(self, field: str) -> None:
        self.field = field

    def _all(self) -> dict[str, Any]:
        return {n: v for n, p in all_platforms().items() if (v := getattr(p, self.field)) is not None}

    def __getitem__(self, name: str) -> Any:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def names_with_webhooks() -> tuple[str, ...]:
    return tuple(p.name for p in all_platforms().values() if p.webhook)


def hook_class(name: str) -> type:
    module, _, attr = get(name).hook.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def load(path: str) -> Any:
    """An object named ``package.module:attribute``."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def has_tokens(name: str) -> bool:
    """Whether the platform's connections hold tokens (every one but Kipu's local feed and outbox)."""
    return name in all_platforms() and not get(name).local


def account_hook(conn: Connection) -> Any:
    """The hook of a connected account with tokens (refresh, health), whatever its roles."""
    if not has_tokens(conn.platform):
        raise PlatformNotSupported(f"{conn.platform} connections have no tokens")
    return hook_class(conn.platform).from_connection(conn)


def source_hook(conn: Connection) -> Any:
    """The hook that watches ``conn``'s account (credentials decrypted in memory only)."""
    platform = get(conn.platform)
    if not platform.source:
        raise PlatformNotSupported(f"watching {conn.platform} accounts is not supported")
    return hook_class(platform.name).from_connection(conn)


def target_hook(conn: Connection) -> Any:
    """The hook that publishes to ``conn``'s account."""
    platform = get(conn.platform)
    if not platform.target:
        raise PlatformNotSupported(f"publishing to {conn.platform} is not supported")
    return hook_class(platform.name).from_connection(conn)
