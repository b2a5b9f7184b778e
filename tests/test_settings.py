"""Settings come from the environment, and a bad value stops the start with a clear message."""

import os
import stat
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from chatsite.env import env_bool, env_choice, env_int, env_list, env_str
from tests.live import BASE_DIR


def start_django(tmp_path, **env):
    """Import the settings in a fresh interpreter, the way a server start does."""
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"}}
    clean.update({"DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "chatsite.settings", **env})
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=clean, capture_output=True, text=True, timeout=60
    )


def test_it_reads_typed_values(monkeypatch):
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_INT", "42")
    monkeypatch.setenv("X_LIST", "a.example, b.example,,")
    monkeypatch.setenv("X_CHOICE", "Open")
    assert env_bool("X_BOOL", False) is True
    assert env_int("X_INT", 1) == 42
    assert env_list("X_LIST", []) == ["a.example", "b.example"]
    assert env_choice("X_CHOICE", "closed", ("open", "closed")) == "open"
    assert env_int("X_UNSET", 7) == 7


@pytest.mark.parametrize(
    ("name", "value", "reader"),
    [
        ("X_BOOL", "maybe", lambda: env_bool("X_BOOL", False)),
        ("X_INT", "forty", lambda: env_int("X_INT", 1)),
        ("X_INT", "-3", lambda: env_int("X_INT", 1, minimum=0)),
        ("X_CHOICE", "sometimes", lambda: env_choice("X_CHOICE", "open", ("open", "closed"))),
    ],
)
def test_it_fails_loudly_on_a_bad_value(monkeypatch, name, value, reader):
    monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=name):
        reader()


def test_it_reads_secrets_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert env_str("X_SECRET") == "from-a-file"


def test_it_generates_a_private_secret_key_once(tmp_path):
    first = start_django(tmp_path)
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first.stdout.strip() == key_file.read_text().strip()
    second = start_django(tmp_path)
    assert second.stdout == first.stdout


def test_it_refuses_to_start_in_production_without_a_secret_key(tmp_path):
    result = start_django(tmp_path, CHAT_PRODUCTION="1")
    assert result.returncode != 0
    assert "set SECRET_KEY" in result.stderr
    assert not (tmp_path / "secret_key").exists()


def test_it_refuses_a_malformed_setting_at_start(tmp_path):
    result = start_django(tmp_path, CHAT_SIGNUP="everyone")
    assert result.returncode != 0
    assert "CHAT_SIGNUP='everyone' must be one of: open, approval, closed" in result.stderr
