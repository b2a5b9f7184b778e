# Shared by scripts/run and scripts/test: create .venv and install the project, only when something changed.
# Usage: ensure_venv "" | ensure_venv "test"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"

ensure_venv() {
    local extra="$1"
    if [ ! -x "$VENV/bin/python" ]; then
        if ! "$PYTHON_BIN" -m venv "$VENV" 2>/dev/null; then
            rm -rf "$VENV"
            if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
                echo "Installing python3-venv (Debian ships venv separately)..."
                apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
                "$PYTHON_BIN" -m venv "$VENV"
            else
                echo "Cannot create a virtualenv. On Debian/Ubuntu: sudo apt-get install python3-venv" >&2
                exit 1
            fi
        fi
    fi
    # Reinstall only when pyproject.toml or the requested extra changed since the last install.
    local stamp="$VENV/.installed"
    local want
    want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1) extra=${extra:-none}"
    if [ -f "$stamp" ] && { [ "$(cat "$stamp")" = "$want" ] || { [ -z "$extra" ] && grep -q "^${want% *} extra=" "$stamp"; }; }; then
        return
    fi
    echo "Installing dependencies into .venv ..."
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    if [ -n "$extra" ]; then
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$extra]"
    else
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT"
    fi
    echo "$want" > "$stamp"
}
