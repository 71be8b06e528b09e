"""Class 10: workflow files cannot exhaust the server, and every bad one gets a clear error, through the CLI, the
API and the DAG factory alike. Alias bombs, quadratic validation, uncomputable delays, duplicate keys, names
without ASCII letters, tracebacks, fullwidth hashtags; every limit documented and held in bounded time and memory."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml
from kipu.captions.hashtags import extract_hashtags
from kipu.filters import trigger_filter_reason
from kipu.specs.document import MAX_STEPS, DocumentError, load_document
from kipu.specs.graph import build_graph
from kipu.specs.items import ContentItem
from kipu.specs.steps import DelayStep
from kipu.specs.triggers import TriggerFilters
from kipu.specs.workflow import WorkflowSpecError, parse_workflow

from tests.helpers import demo_doc

API = "/kipu/api"
BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(f"{n}: &{n} [{', '.join(['*' + p] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)),
    ]
)


def kipu(*args: str, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    """The ``kipu`` command in a child process."""
    probe = (
        "import sys; from kipu.cli import main\n"
        "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as exc:\n"
        "    code = exc.code if isinstance(exc.code, int) else (print(exc.code, file=sys.stderr) or 1)\n"
        "sys.exit(code)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", probe, *args],
        input=stdin.decode() if stdin else None,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def _doc_yaml(**changes: object) -> str:
    return yaml.safe_dump(demo_doc(**changes), sort_keys=False)


def _bomb_document(where: str) -> str:
    if where == "top":
        return BOMB
    indented = "\n".join("      " + line for line in BOMB.splitlines())
    doc = demo_doc()  # a valid document, with the bomb inside a publish step's options
    publish = next(s for s in doc["steps"] if s["type"] == "publish")
    publish["config"] = {"platform_options": {"x": "PLACEHOLDER"}}
    return yaml.safe_dump(doc, sort_keys=False).replace("x: PLACEHOLDER", "x:\n" + indented)


@pytest.mark.parametrize("where", ["top", "platform_options"])
def test_an_alias_bomb_fails_fast_in_little_memory(tmp_path: Path, where: str) -> None:
    """9^9 values (5.5 GB expanded) in a 1 KB file: refused in a fraction of a second, having allocated little."""
    text = _bomb_document(where).encode()
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(DocumentError, match="expands to more than 20000 values"):
            load_document(text, "bomb.yaml")
        elapsed, (_, peak) = time.monotonic() - started, tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 2 and peak < 20 * 1024 * 1024, (elapsed, peak)
    path = tmp_path / "bomb.yaml"
    path.write_bytes(text)
    out = kipu("workflow", "import", str(path))  # the same loader behind the CLI
    assert out.returncode == 1 and "expands to more than 20000 values" in out.stderr, out.stderr


def test_a_self_referencing_alias_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "self.yaml"
    path.write_text(_doc_yaml() + "extra: &me [*me]\n")
    for command in (["workflow", "validate", "--offline", str(path)], ["workflow", "import", str(path)]):
        out = kipu(*command)
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert "refers to a value that contains it" in out.stderr


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    text = _doc_yaml() + "steps:\n  - {id: only, type: delay, config: {duration_seconds: 1}}\n"
    (tmp_path / "dup.yaml").write_text(text)
    out = kipu("workflow", "validate", "--offline", str(tmp_path / "dup.yaml"))
    assert out.returncode == 1 and "the key 'steps' appears more than once" in out.stderr
    (tmp_path / "dup.json").write_text(json.dumps(demo_doc())[:-1] + ', "name": "again"}')
    out = kipu("workflow", "validate", "--offline", str(tmp_path / "dup.json"))
    assert out.returncode == 1 and "the key 'name' appears more than once" in out.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00n\x00a", "not UTF-8 text (byte 0xff at offset 0)"),
        (b"- a\n- b\n", "must be a mapping of workflow fields, got list"),
        (b"a: " + b"[" * 5000 + b"]" * 5000, "nested deeper than the limit of 20 levels"),
        (b"name: x\n" + b"#" * (300 * 1024), "over the limit of 262144"),
        (b"", "the file is empty"),
    ],
)
def test_files_that_cannot_be_read_get_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    out = kipu("workflow", "validate", "--offline", str(path))
    assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    deep_json = tmp_path / "deep.json"
    deep_json.write_text("[" * 100_000 + "]" * 100_000)
    out = kipu("workflow", "validate", "--offline", str(deep_json))
    assert out.returncode == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e12", "1e300"])
def test_delays_that_cannot_be_computed_are_refused(value: str) -> None:
    doc = _doc_yaml().replace("duration_seconds: 3", f"duration_seconds: {value}")
    assert f"duration_seconds: {value}" in doc
    with pytest.raises(WorkflowSpecError) as info:
        parse_workflow(load_document(doc.encode(), "delay.yaml"))
    assert any("duration_seconds" in e or "the delay is" in e for e in info.value.errors)


def test_an_uncomputable_delay_never_reaches_postgresql(pg_demo_team: dict, tmp_path: Path) -> None:
    """Imported on PostgreSQL it was a DataError traceback; now the CLI names the field before anything is stored."""
    path = tmp_path / "delay.yaml"
    path.write_text(_doc_yaml().replace("duration_seconds: 3", "duration_seconds: .nan"))
    out = kipu("workflow", "import", str(path), env={"KIPU_DATABASE_URL": os.environ["KIPU_DATABASE_URL"]})
    assert out.returncode == 1 and "Traceback" not in out.stderr and "duration_seconds" in out.stderr, out.stderr


def test_names_without_an_ascii_letter_get_stable_distinct_slugs(pg_demo_team: dict) -> None:
    from kipu.store.engine import session_scope
    from kipu.store.workflows import export_workflow, save_workflow

    doc_a, doc_b = demo_doc(name="🚀✨"), demo_doc(name="🌮🌮")
    for d in (doc_a, doc_b):
        d.pop("slug")
    with session_scope() as s:
        a, b = save_workflow(s, doc_a), save_workflow(s, doc_b)
        assert a.id != b.id and a.slug != b.slug and a.slug.startswith("w_") and a.dag_id == f"kipu.demo.{a.slug}"
        again = save_workflow(s, doc_a)  # the same name is the same workflow
        assert again.id == a.id
        assert export_workflow(s, str(a.id))["slug"] == a.slug


def test_validation_is_linear_and_steps_are_capped() -> None:
    def chain(n: int) -> list[DelayStep]:
        return [DelayStep(id=f"s{i}", config={"duration_seconds": 1}) for i in range(n)]

    def timed(n: int) -> float:
        steps = chain(n)
        best = float("inf")
        gc.disable()  # a collection landing in one run would be noise, not the algorithm
        try:
            for _ in range(3):
                started = time.perf_counter()
                _, errors = build_graph(steps)
                best = min(best, time.perf_counter() - started)
                assert errors == []
        finally:
            gc.enable()
        return best

    small, large = timed(4000), timed(36000)
    assert large < 30 * small, (small, large)  # 9x the steps: linear is about 9x, quadratic 81x (36,000 took hours)
    doc = demo_doc()
    doc["steps"] = [{"id": f"s{i}", "type": "delay", "config": {"duration_seconds": 1}} for i in range(MAX_STEPS + 1)]
    with pytest.raises(WorkflowSpecError, match=f"over the limit of {MAX_STEPS}"):
        parse_workflow(doc)


def test_the_api_and_the_factory_hold_the_same_limits(api, roles: dict) -> None:
    doc = demo_doc()
    doc["steps"] = [{"id": f"s{i}", "type": "delay", "config": {"duration_seconds": 1}} for i in range(MAX_STEPS + 1)]
    out = api.post(f"{API}/workflows", json=doc, headers=roles["member"])
    assert out.status_code == 422 and f"over the limit of {MAX_STEPS}" in out.text
    nan = demo_doc()
    next(s for s in nan["steps"] if s["type"] == "delay")["config"] = {"duration_minutes": 1e12}
    out = api.post(f"{API}/workflows", json=nan, headers=roles["member"])
    assert out.status_code == 422 and "the delay is" in out.text


def test_cli_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    unmigrated = f"sqlite:///{tmp_path / 'empty.db'}"
    path = tmp_path / "wf.yaml"
    path.write_text(_doc_yaml())
    out = kipu("workflow", "validate", str(path), env={"KIPU_DATABASE_URL": unmigrated})
    assert out.returncode == 3 and "run `kipu db upgrade` first" in out.stderr and "Traceback" not in out.stderr
    subprocess.run(
        [sys.executable, "-m", "kipu.cli", "db", "upgrade"],
        env={**__import__("os").environ, "KIPU_DATABASE_URL": unmigrated},
        check=True,
        capture_output=True,
    )
    out = kipu(
        "team",
        "create",
        "T",
        "--owner",
        "o@x.test",
        "--member",
        "e@x.test:editor",
        env={"KIPU_DATABASE_URL": unmigrated},
    )
    assert out.returncode == 64 and "role 'editor' is not one of owner, admin, member, viewer" in out.stderr
    assert "Traceback" not in out.stderr


def test_fullwidth_hashtags_match_in_specs_and_captions() -> None:
    assert extract_hashtags("Dinner ＃Pasta tonight") == ["Pasta"]
    item = ContentItem(platform="feed", platform_post_id="1", caption="Dinner ＃Pasta tonight")
    assert trigger_filter_reason(TriggerFilters(hashtags_include=["＃pasta"]), item) is None
    assert trigger_filter_reason(TriggerFilters(hashtags_exclude=["#PASTA"]), item) == "hashtag #PASTA is excluded"


def test_the_loader_is_the_one_entry_for_files() -> None:
    with pytest.raises(DocumentError, match="appears more than once"):
        load_document(b"a: 1\na: 2\n", "x.yaml")
    assert load_document(json.dumps(demo_doc()).encode(), "x.json")["name"] == demo_doc()["name"]
