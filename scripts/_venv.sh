# Shared by scripts/run and scripts/test: create .venv and install the project, only when something changed.
# Usage: ensure_venv "" | ensure_venv "test"; scripts/test also calls ensure_chromium.
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

# The browser tests' Chromium: Debian's package (Playwright's own download does not work here). Installed when
# missing and we are root with apt, as python3-venv is above; otherwise the one command to run is printed.
# Usage: ensure_chromium PATH [DEBIANS_PATH]: only Debian's own path (default /usr/bin/chromium) is installed.
ensure_chromium() {
    local path="$1" debians="${2:-/usr/bin/chromium}"
    [ -x "$path" ] && return
    if [ "$path" = "$debians" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        echo "Installing Debian's Chromium for the browser tests (about a minute, once)..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
        [ -x "$path" ] && return
    fi
    echo "The browser tests need Debian's Chromium at $path. Install it with: sudo apt-get install -y chromium" >&2
    exit 1
}
