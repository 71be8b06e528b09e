"""Numeric settings from the environment: defaults, types, and errors that name the variable and the limit."""

from __future__ import annotations

import pytest
from kipu.config import env_number


def test_defaults_and_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KIPU_X", raising=False)
    assert env_number("KIPU_X", 5) == 5
    monkeypatch.setenv("KIPU_X", " ")
    assert env_number("KIPU_X", 5) == 5
    monkeypatch.setenv("KIPU_X", "7")
    assert env_number("KIPU_X", 5) == 7 and isinstance(env_number("KIPU_X", 5), int)
    monkeypatch.setenv("KIPU_X", "2.5")
    assert env_number("KIPU_X", 1.0) == 2.5


def test_bad_values_name_the_variable_and_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIPU_API_DB_POOL_SIZE", "five")
    with pytest.raises(ValueError, match="KIPU_API_DB_POOL_SIZE='five' is not an integer"):
        env_number("KIPU_API_DB_POOL_SIZE", 5, minimum=1)
    monkeypatch.setenv("KIPU_API_DB_POOL_SIZE", "0")
    with pytest.raises(ValueError, match="KIPU_API_DB_POOL_SIZE='0' is below its minimum of 1"):
        env_number("KIPU_API_DB_POOL_SIZE", 5, minimum=1)
    monkeypatch.setenv("KIPU_TASK_RETRY_DELAY", "soon")
    with pytest.raises(ValueError, match="KIPU_TASK_RETRY_DELAY='soon' is not a number"):
        env_number("KIPU_TASK_RETRY_DELAY", 20.0)
