"""``kipu plan`` and ``kipu apply`` on a folder of 50 workflows (real PostgreSQL): create, change, pause, prune, a
concurrent change between plan and apply, invalid files blocking every write, and the shards asked to parse again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kipu.cli import main
from kipu.store.engine import session_scope
from kipu.store.models import Workflow
from sqlalchemy import select

from tests.helpers import demo_doc

N = 50


def write_folder(folder: Path, n: int = N) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        doc = demo_doc(name=f"Cross-post {i:02d}")
        doc.pop("slug")  # the slug comes from the file name
        doc.pop("team")  # the folder's team is given on the command line
        if i % 10 == 0:
            doc["status"] = "paused"
        (folder / f"wf_{i:02d}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def edit(path: Path, change: Any) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def stored() -> dict[str, str]:
    with session_scope() as s:
        return dict(s.execute(select(Workflow.slug, Workflow.status)).all())  # type: ignore[arg-type]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_plan_and_apply_a_folder_of_50_workflows(
    pg_demo_team: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_folder(tmp_path / "workflows")
    code, out, _ = cli(capsys, "plan", str(folder), "--team", "demo")
    assert code == 2 and "Plan: 50 to create, 0 to change, 0 to pause, 0 to delete." in out
    assert "+ create demo/wf_07 (wf_07.yaml)" in out
    assert stored() == {}  # a plan writes nothing

    code, out, _ = cli(capsys, "apply", str(folder), "--team", "demo")
    assert code == 0 and "Applied: 50 to create" in out
    got = stored()
    assert len(got) == N and got["wf_07"] == "active" and got["wf_10"] == "paused"
    assert cli(capsys, "plan", str(folder), "--team", "demo")[:2] == (
        0,
        "No changes: team 'demo' matches " + f"{folder}.\n",
    )

    # Change three, drop two: the plan shows a readable diff and pauses what the folder no longer names.
    for i in (3, 4, 5):
        edit(folder / f"wf_{i:02d}.yaml", lambda d: d["steps"][1]["config"].update(tone="professional"))
    (folder / "wf_22.yaml").unlink()
    (folder / "wf_21.yaml").unlink()
    code, out, _ = cli(capsys, "plan", str(folder), "--team", "demo")
    assert code == 2 and "Plan: 0 to create, 3 to change, 2 to pause, 0 to delete." in out
    assert "~ update demo/wf_03 (wf_03.yaml)" in out and "-    tone: casual" in out and "+    tone: professional" in out
    assert "= pause demo/wf_21" in out and "status: active -> paused" in out
    assert cli(capsys, "apply", str(folder), "--team", "demo")[0] == 0
    got = stored()
    assert got["wf_22"] == got["wf_21"] == "paused" and len(got) == N
    with session_scope() as s:
        wf = s.scalar(select(Workflow).where(Workflow.slug == "wf_04"))
        assert (
            next(st.config for st in wf.steps if st.step_key == "rewrite_for_bluesky")["config"]["tone"]
            == "professional"
        )

    # --prune deletes them instead: their DAGs go, their history stays.
    code, out, _ = cli(capsys, "plan", str(folder), "--team", "demo", "--prune", "--json")
    plan = json.loads(out)
    assert code == 2 and sorted((c["action"], c["slug"]) for c in plan["changes"]) == [
        ("delete", "wf_21"),
        ("delete", "wf_22"),
    ]
    assert cli(capsys, "apply", str(folder), "--team", "demo", "--prune")[0] == 0
    got = stored()
    assert got["wf_22"] == got["wf_21"] == "inactive" and len(got) == N
    assert cli(capsys, "plan", str(folder), "--team", "demo", "--prune")[0] == 0


def test_a_change_between_plan_and_apply_refuses_the_plan(
    pg_demo_team: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kipu.store.workflows import set_status

    folder = write_folder(tmp_path / "workflows", 5)
    assert cli(capsys, "apply", str(folder), "--team", "demo")[0] == 0
    edit(folder / "wf_01.yaml", lambda d: d.update(description="changed in git"))
    plan_file = tmp_path / "plan.json"
    assert cli(capsys, "plan", str(folder), "--team", "demo", "--out", str(plan_file))[0] == 2

    with session_scope() as s:  # someone pauses a workflow in the UI meanwhile
        set_status(s.scalar(select(Workflow).where(Workflow.slug == "wf_02")), "paused")
    code, _, err = cli(capsys, "apply", str(folder), "--plan-file", str(plan_file))
    assert code == 1 and "team 'demo' changed in the store since the plan was made; nothing was applied" in err
    with session_scope() as s:
        assert s.scalar(select(Workflow.description).where(Workflow.slug == "wf_01")) != "changed in git"

    # A fresh plan sees both; a folder edited after the plan is refused too.
    assert cli(capsys, "plan", str(folder), "--team", "demo", "--out", str(plan_file))[0] == 2
    edit(folder / "wf_03.yaml", lambda d: d.update(description="edited after the plan"))
    code, _, err = cli(capsys, "apply", str(folder), "--plan-file", str(plan_file))
    assert code == 1 and "the workflow files changed since the plan was made" in err
    assert cli(capsys, "plan", str(folder), "--team", "demo", "--out", str(plan_file))[0] == 2
    assert cli(capsys, "apply", str(folder), "--plan-file", str(plan_file))[0] == 0
    with session_scope() as s:
        assert s.scalar(select(Workflow.description).where(Workflow.slug == "wf_01")) == "changed in git"
        assert s.scalar(select(Workflow.status).where(Workflow.slug == "wf_02")) == "active"  # the folder wins


def test_one_invalid_file_blocks_every_write_and_every_error_is_listed(
    pg_demo_team: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_folder(tmp_path / "workflows")
    (folder / "broken.yaml").write_text("name: [unclosed\n")
    edit(folder / "wf_08.yaml", lambda d: d["steps"][-1].update(connection_id="outbox:theirs"))
    edit(folder / "wf_09.yaml", lambda d: d["steps"][2]["config"].update(if_true_steps=["nowhere"]))
    edit(folder / "wf_11.yaml", lambda d: d.update(slug="wf_12"))
    code, _, err = cli(capsys, "plan", str(folder), "--team", "demo")
    assert code == 1 and "nothing can be applied until every file is valid" in err
    assert "broken.yaml" in err
    assert "wf_08.yaml: steps[6] (publish 'publish_outbox').connection_id: 'outbox:theirs' is not a connection" in err
    assert "wf_09.yaml: steps[2] (condition 'long_or_short').config.if_true_steps[0]: 'nowhere' is not a step" in err
    assert "wf_12.yaml: slug 'wf_12' is also the slug of wf_11.yaml" in err
    code, _, err = cli(capsys, "apply", str(folder), "--team", "demo")
    assert code == 1 and "refused (422)" in err and "broken.yaml" in err
    assert stored() == {}  # not one of the 49 valid files was written


def test_files_name_their_team_and_a_webhook_secret_stays_out_of_git(
    pg_demo_team: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kipu.store.crypto import get_cipher

    folder = tmp_path / "wf"
    folder.mkdir()
    hook = demo_doc(name="Hooked", slug="hooked")
    hook["trigger"] = {"type": "webhook", "platform": "feed", "connection_id": "feed:demo"}
    (folder / "hooked.yml").write_text(yaml.safe_dump(hook))
    (folder / "other.yaml").write_text(yaml.safe_dump(demo_doc(team="other", slug="theirs")))
    code, _, err = cli(capsys, "plan", str(folder))
    assert code == 1 and "name the folder's team with --team (the files name: demo, other)" in err
    code, _, err = cli(capsys, "plan", str(folder), "--team", "demo")
    assert code == 1 and "other.yaml: team: 'other' is not the team of this folder ('demo')" in err
    (folder / "other.yaml").unlink()
    assert cli(capsys, "apply", str(folder))[0] == 0
    empty = tmp_path / "mistyped"
    empty.mkdir()
    code, _, err = cli(capsys, "apply", str(empty), "--team", "demo")  # would have paused every workflow
    assert code == 1 and "no workflow files (.yaml, .yml, .json) in it" in err
    assert stored() == {"hooked": "active"}
    code, _, err = cli(capsys, "apply", str(folder), "--plan-file", str(tmp_path / "nope.json"))
    assert code == 1 and "not a plan written by kipu plan --out" in err

    with session_scope() as s:
        wf = s.scalar(select(Workflow).where(Workflow.slug == "hooked"))
        wf.trigger_config = {**wf.trigger_config, "webhook_secret": get_cipher().encrypt("rotated-in-the-ui")}
    assert cli(capsys, "plan", str(folder))[0] == 0  # no secret in the file: nothing to change
    edit(folder / "hooked.yml", lambda d: d.update(description="new words"))
    assert cli(capsys, "apply", str(folder))[0] == 0
    with session_scope() as s:
        wf = s.scalar(select(Workflow).where(Workflow.slug == "hooked"))
        assert wf.description == "new words"
        assert get_cipher().decrypt(wf.trigger_config["webhook_secret"]).get_secret_value() == "rotated-in-the-ui"


def test_apply_asks_airflow_to_parse_the_changed_shards(
    airflow_db: Path, pg_demo_team: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.models.dagbag import DagPriorityParsingRequest
    from airflow.utils.session import create_session
    from kipu.factory.shards import file_name, shard_count, shard_key, shard_of
    from sqlalchemy import delete

    DagBundlesManager().sync_bundles_to_db()
    with create_session() as s:
        s.execute(delete(DagPriorityParsingRequest))
    folder = write_folder(tmp_path / "workflows", 3)
    assert cli(capsys, "apply", str(folder), "--team", "demo")[0] == 0
    with session_scope() as s:
        ids = dict(s.execute(select(Workflow.slug, Workflow.id)).all())
    with create_session() as s:
        requested = set(s.scalars(select(DagPriorityParsingRequest.relative_fileloc)))
        s.execute(delete(DagPriorityParsingRequest))
    n = shard_count()
    assert requested == {file_name(shard_of(shard_key(i), n), n) for i in ids.values()}

    edit(folder / "wf_01.yaml", lambda d: d.update(description="only this one"))
    assert cli(capsys, "apply", str(folder), "--team", "demo")[0] == 0
    with create_session() as s:
        requested = set(s.scalars(select(DagPriorityParsingRequest.relative_fileloc)))
    assert requested == {file_name(shard_of(shard_key(ids["wf_01"]), n), n)}


def test_connection_health_exits_1_when_one_needs_attention(
    pg_demo_team: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    from kipu.store.models import Connection

    code, out, _ = cli(capsys, "connection", "health", "--team", "demo")
    assert code == 0 and out.count("healthy") == 2
    with session_scope() as s:
        feed = s.scalar(select(Connection).where(Connection.platform == "feed"))
        feed.status, feed.last_error = "needs_reconnect", "the feed answered 410 Gone"
    code, out, _ = cli(capsys, "connection", "health", "--team", "demo")
    assert code == 1 and "needs_reconnect" in out and "the feed answered 410 Gone" in out
    code, out, _ = cli(capsys, "connection", "list", "--json")
    assert code == 0 and {c["status"] for c in json.loads(out) if c["team"] == "demo"} == {"healthy", "needs_reconnect"}
