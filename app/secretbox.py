"""Secrets the service must read back (webhook signing secrets), kept encrypted at rest
(docs/SECURITY.md#secrets-key).

Encrypted with Fernet (the `cryptography` library: AES-128-CBC with HMAC-SHA256, a
timestamp, authenticated as a whole) under `SECRETS_KEY`, or the key in
`SECRETS_KEY_FILE`, or else one generated once in `DATA_DIR/secrets.key` (mode 0600):
enough for one node or for instances sharing `DATA_DIR`; instances with separate data
folders must be given the same key. Several keys, comma-separated, rotate it: the first
encrypts, every one decrypts. A database reader alone can therefore sign nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.config import Settings
from app.files import create_once

log = logging.getLogger(__name__)

KEY_FILE_NAME = "secrets.key"


class SecretsKeyError(RuntimeError):
    """The configured key cannot be used, or cannot open what was stored with another."""


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        try:
            self._fernet = MultiFernet([Fernet(key.strip().encode()) for key in keys])
        except ValueError as exc:
            raise SecretsKeyError(
                "SECRETS_KEY must be Fernet keys (32 url-safe base64-encoded bytes), "
                "comma-separated; make one with `izin-siaran secrets-key`"
            ) from exc

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SecretsKeyError(
                "a stored secret does not open with SECRETS_KEY: the key differs from the "
                "one it was sealed with (give every instance the same key)"
            ) from None


def new_key() -> str:
    return Fernet.generate_key().decode()


def load_secret_box(settings: Settings) -> SecretBox:
    """The box of `SECRETS_KEY`, `SECRETS_KEY_FILE` or the data folder's generated key."""
    text = settings.secrets_key.get_secret_value()
    if not text and settings.secrets_key_file is not None:
        text = _read(settings.secrets_key_file)
    if not text:
        path = settings.data_dir / KEY_FILE_NAME
        if not path.exists():
            log.warning("secrets key kept in %s; instances must share it", path)
        text = _read(create_once(path, (new_key() + "\n").encode()))
    return SecretBox([part for part in text.split(",") if part.strip()])


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise SecretsKeyError(f"cannot read the secrets key file {path}: {exc}") from None
