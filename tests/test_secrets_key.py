"""SECRETS_KEY (SPEC §7, docs/SECURITY.md#secrets-key): webhook secrets are sealed with a
key the database does not hold; generated once in DATA_DIR (0600) when none is given."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from app.config import Settings, SettingsError, load_settings
from app.secretbox import KEY_FILE_NAME, SecretBox, SecretsKeyError, load_secret_box, new_key


def test_a_key_is_generated_once_in_the_data_folder(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    sealed = load_secret_box(settings).seal("whsec_rahasia")
    path = tmp_path / "data" / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_box(settings).open(sealed) == "whsec_rahasia"  # the same key again
    assert "whsec_rahasia" not in sealed


def test_a_given_key_or_key_file_is_used(tmp_path: Path) -> None:
    key = new_key()
    given = Settings(_env_file=None, data_dir=tmp_path, secrets_key=SecretStr(key))  # type: ignore[call-arg]
    sealed = load_secret_box(given).seal("s")
    (tmp_path / "k").write_text(key + "\n")
    from_file = Settings(_env_file=None, data_dir=tmp_path / "x", secrets_key_file=tmp_path / "k")  # type: ignore[call-arg]
    assert load_secret_box(from_file).open(sealed) == "s"
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_keys_rotate_new_first_old_still_opening() -> None:
    old, new = new_key(), new_key()
    sealed_old = SecretBox([old]).seal("a")
    both = SecretBox([new, old])
    assert both.open(sealed_old) == "a"
    assert SecretBox([new]).open(both.seal("b")) == "b"
    with pytest.raises(SecretsKeyError, match="does not open"):
        SecretBox([new]).open(sealed_old)


def test_a_malformed_key_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETS_KEY", "not-a-fernet-key")
    with pytest.raises(SettingsError, match="SECRETS_KEY"):
        load_settings(_env_file=None)
