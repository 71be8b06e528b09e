"""OAuth tokens encrypted at rest with MultiFernet over ``ENCRYPTION_KEY`` (comma-separated, newest first)."""

from __future__ import annotations

import os
import stat
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr


class EncryptionKeyError(RuntimeError):
    """No usable encryption key is configured."""


class TokenDecryptError(RuntimeError):
    """A stored token cannot be decrypted with any configured key."""


def _read_keys() -> list[str]:
    raw = os.environ.get("ENCRYPTION_KEY", "").strip()
    source = "ENCRYPTION_KEY"
    if not raw and os.environ.get("ENCRYPTION_KEY_FILE"):
        path = Path(os.environ["ENCRYPTION_KEY_FILE"])
        source = f"ENCRYPTION_KEY_FILE ({path})"
        try:
            raw = path.read_text().strip()
        except OSError as exc:
            raise EncryptionKeyError(f"{source} cannot be read: {exc.strerror}") from None
    if not raw:
        raise EncryptionKeyError(
            "ENCRYPTION_KEY is not set: Kipu refuses to store OAuth tokens unencrypted. "
            "Generate one with `kipu keys generate` and export ENCRYPTION_KEY (comma-separate old keys to rotate)."
        )
    keys = [k.strip() for k in raw.replace("\n", ",").split(",") if k.strip()]
    for i, key in enumerate(keys):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise EncryptionKeyError(
                f"{source}: key #{i + 1} is not a valid Fernet key (32 url-safe base64 bytes)"
            ) from None
    return keys


class TokenCipher:
    """Encrypts and decrypts tokens; the first key encrypts, every key decrypts."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise EncryptionKeyError("at least one encryption key is required")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def __repr__(self) -> str:
        return "TokenCipher(<keys hidden>)"

    def encrypt(self, token: str | SecretStr | None) -> str | None:
        if token is None:
            return None
        value = token.get_secret_value() if isinstance(token, SecretStr) else token
        if value == "":
            return None
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, ciphertext: str | None) -> SecretStr | None:
        if not ciphertext:
            return None
        try:
            return SecretStr(self._fernet.decrypt(ciphertext.encode()).decode())
        except InvalidToken:
            raise TokenDecryptError(
                "a stored token cannot be decrypted with the configured ENCRYPTION_KEY; "
                "was a key removed before `kipu keys rotate` ran?"
            ) from None

    def rotate(self, ciphertext: str | None) -> str | None:
        """Re-encrypt under the primary key."""
        if not ciphertext:
            return ciphertext
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise TokenDecryptError("a stored token cannot be decrypted with any configured key") from None


@lru_cache(maxsize=1)
def get_cipher() -> TokenCipher:
    """The process-wide cipher; raises EncryptionKeyError when no key is configured."""
    return TokenCipher(_read_keys())


def generate_key() -> str:
    return Fernet.generate_key().decode()


def ensure_key_file(path: Path) -> Path:
    """Create a Fernet key file with mode 0600 if none exists (the demo's key)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(generate_key() + "\n")
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return path
