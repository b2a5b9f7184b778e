"""The production environment documented in docs/deployment.md passes `manage.py check --deploy` cleanly."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from cryptography.fernet import Fernet

from tests.live import BASE_DIR

DOC = BASE_DIR / "docs" / "deployment.md"
MARKER = "<!-- production-env:"


def documented_environment() -> dict[str, str]:
    """The NAME=value lines of the fenced block right after the marker in docs/deployment.md."""
    text = DOC.read_text()
    assert MARKER in text, f"{DOC} lost its production environment block"
    block = re.search(r"```sh\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert block is not None
    env = {}
    for line in block.group(1).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    return env


def test_the_documented_production_environment_passes_check_deploy(tmp_path):
    env = documented_environment()
    assert env["CHAT_PRODUCTION"] == "1" and "SECRET_KEY" not in env, "secrets belong in files"
    # Same settings, with the secret files and directories of this machine.
    secrets = {
        "SECRET_KEY_FILE": Fernet.generate_key().decode() * 2,
        "CHAT_ENCRYPTION_KEY_FILE": Fernet.generate_key().decode(),
        "DATABASE_URL_FILE": "postgres://chatsite:secret@127.0.0.1:5432/chatsite",
    }
    for name, value in secrets.items():
        assert name in env, f"the documented environment no longer sets {name}"
        path = tmp_path / name.lower()
        path.write_text(value + "\n")
        env[name] = str(path)
    env["DATA_DIR"] = str(tmp_path / "data")
    env["STATIC_ROOT"] = str(tmp_path / "static")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CHAT_", "SECURE_", "DJANGO_"))}
    for name in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS", "DEBUG", "CSRF_TRUSTED_ORIGINS"):
        clean.pop(name, None)
    clean.update(env, DJANGO_SETTINGS_MODULE="chatsite.settings")

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr
