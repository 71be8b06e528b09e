"""Tokens are encrypted at rest, keys rotate, a missing key is an error, and tokens never print."""

from __future__ import annotations

import logging
import os

import pytest
from cryptography.fernet import Fernet
from kipu.store import crypto
from kipu.store.crypto import EncryptionKeyError, TokenCipher, TokenDecryptError
from pydantic import SecretStr
from sqlalchemy import text

TOKEN = "tok-VERY-SECRET-abc123"


@pytest.fixture(autouse=True)
def _fresh_cipher():
    crypto.get_cipher.cache_clear()
    yield
    crypto.get_cipher.cache_clear()


def test_round_trip_and_ciphertext_differs() -> None:
    cipher = TokenCipher([Fernet.generate_key().decode()])
    sealed = cipher.encrypt(TOKEN)
    assert sealed and TOKEN not in sealed
    assert cipher.decrypt(sealed).get_secret_value() == TOKEN


def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENCRYPTION_KEY", raising=False)
    monkeypatch.delenv("ENCRYPTION_KEY_FILE", raising=False)
    with pytest.raises(EncryptionKeyError, match="ENCRYPTION_KEY is not set"):
        crypto.get_cipher()


def test_bad_key_names_its_position(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCRYPTION_KEY", f"{Fernet.generate_key().decode()},not-a-key")
    with pytest.raises(EncryptionKeyError, match="key #2 is not a valid Fernet key"):
        crypto.get_cipher()


def test_key_file_is_created_0600(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = crypto.ensure_key_file(tmp_path / "k" / "encryption.key")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    Fernet(path.read_text().strip())


def test_rotation_reencrypts_every_token(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from kipu.store.accounts import (
        connection_tokens,
        get_or_create_profile,
        get_or_create_team,
        rotate_tokens,
        upsert_connection,
    )
    from kipu.store.engine import get_engine, session_scope
    from kipu.store.models import Connection

    old = os.environ["ENCRYPTION_KEY"]
    with session_scope() as s:
        team = get_or_create_team(s, "T", get_or_create_profile(s, "o@t.test"))
        upsert_connection(s, team, "bluesky", "did:plc:1", access_token=TOKEN, refresh_token="refresh-SECRET")
    new = Fernet.generate_key().decode()
    monkeypatch.setenv("ENCRYPTION_KEY", f"{new},{old}")
    crypto.get_cipher.cache_clear()
    with session_scope() as s:
        assert rotate_tokens(s) == 1
    monkeypatch.setenv("ENCRYPTION_KEY", new)  # the old key is retired
    crypto.get_cipher.cache_clear()
    with session_scope() as s:
        conn = s.query(Connection).one()
        access, refresh = connection_tokens(conn)
        assert access.get_secret_value() == TOKEN and refresh.get_secret_value() == "refresh-SECRET"
    with get_engine().connect() as c:
        stored = c.execute(text("select access_token, refresh_token from connections")).one()
    assert TOKEN not in stored[0] and "refresh-SECRET" not in stored[1]


def test_wrong_key_error_does_not_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    sealed = TokenCipher([Fernet.generate_key().decode()]).encrypt(TOKEN)
    with pytest.raises(TokenDecryptError) as exc:
        TokenCipher([Fernet.generate_key().decode()]).decrypt(sealed)
    assert TOKEN not in str(exc.value) and sealed not in str(exc.value)


def test_tokens_never_print(store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    from kipu.store.accounts import (
        connection_tokens,
        get_or_create_profile,
        get_or_create_team,
        upsert_connection,
    )
    from kipu.store.engine import session_scope

    caplog.set_level(logging.DEBUG)
    with session_scope() as s:
        team = get_or_create_team(s, "T", get_or_create_profile(s, "o@t.test"))
        conn = upsert_connection(s, team, "x", "42", access_token=SecretStr(TOKEN))
        access, _ = connection_tokens(conn)
        logging.getLogger("kipu.test").info("connection %r token %s %r", conn, access, access)
        shown = f"{conn!r} {access} {access!r} {crypto.get_cipher()!r}"
    assert TOKEN not in shown
    assert TOKEN not in caplog.text


def test_empty_refresh_token_never_overwrites_a_good_one(store_url: str) -> None:
    from kipu.store.accounts import (
        connection_tokens,
        get_or_create_profile,
        get_or_create_team,
        upsert_connection,
    )
    from kipu.store.engine import session_scope

    with session_scope() as s:
        team = get_or_create_team(s, "T", get_or_create_profile(s, "o@t.test"))
        upsert_connection(s, team, "linkedin", "u1", access_token="a1", refresh_token="r1")
        conn = upsert_connection(s, team, "linkedin", "u1", access_token="a2", refresh_token="")
        access, refresh = connection_tokens(conn)
    assert access.get_secret_value() == "a2" and refresh.get_secret_value() == "r1"


def test_rotation_under_load_loses_no_refresh_and_leaves_only_the_new_key(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks refresh and read tokens in threads while ``kipu keys rotate`` runs again and again: every connection
    ends with its latest token, readable with the new key alone."""
    import threading
    import time

    from kipu.auth.tokens import credentials_of, refresh_connection
    from kipu.hooks.platform import TokenSet
    from kipu.store.accounts import get_or_create_profile, get_or_create_team, rotate_tokens, upsert_connection
    from kipu.store.engine import session_scope
    from kipu.store.models import Connection

    old = os.environ["ENCRYPTION_KEY"]
    with session_scope() as s:
        team = get_or_create_team(s, "Load", get_or_create_profile(s, "o@load.test"))
        ids = [
            upsert_connection(s, team, "x", f"user-{i}", access_token=f"acc-{i}-0", refresh_token=f"ref-{i}-0").id
            for i in range(8)
        ]
    new = Fernet.generate_key().decode()
    monkeypatch.setenv("ENCRYPTION_KEY", f"{new},{old}")  # step 1 of a rotation: every process has both keys
    crypto.get_cipher.cache_clear()
    slow_rotate = TokenCipher.rotate

    def rotate(self: TokenCipher, ciphertext: str | None) -> str | None:
        time.sleep(0.002)  # a loaded machine: refreshes land between a rotation's read and its write
        return slow_rotate(self, ciphertext)

    monkeypatch.setattr(TokenCipher, "rotate", rotate)
    latest = {cid: 0 for cid in ids}
    errors: list[BaseException] = []
    stop = time.monotonic() + 6

    def refresher(cid: object) -> None:
        try:
            while time.monotonic() < stop:
                with session_scope() as s:
                    creds = credentials_of(s.get(Connection, cid))
                n = latest[cid] + 1

                def grant(_: object, n: int = n) -> TokenSet:
                    from pydantic import SecretStr

                    return TokenSet(access_token=SecretStr(f"acc-{cid}-{n}"), refresh_token=SecretStr(f"ref-{n}"))

                fresh = refresh_connection(creds, grant)
                if fresh.access_token.get_secret_value() == f"acc-{cid}-{n}":
                    latest[cid] = n
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=refresher, args=(cid,)) for cid in ids]
    for w in workers:
        w.start()
    rotations = 0
    while time.monotonic() < stop:
        with session_scope() as s:
            rotate_tokens(s)
        rotations += 1
    for w in workers:
        w.join()
    assert not errors, errors[0]
    assert rotations >= 3 and all(n >= 3 for n in latest.values()), (rotations, latest)
    with session_scope() as s:
        rotate_tokens(s)
    monkeypatch.setenv("ENCRYPTION_KEY", new)  # step 3: the old key is retired
    crypto.get_cipher.cache_clear()
    with session_scope() as s:
        for cid in ids:
            creds = credentials_of(s.get(Connection, cid))
            assert creds.access_token.get_secret_value() == f"acc-{cid}-{latest[cid]}", "a refresh was lost"
