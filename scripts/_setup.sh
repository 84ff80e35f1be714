# Shared set-up for scripts/run and scripts/test: a virtualenv with the locked
# requirements (hashes checked) and the npm front-end packages. Re-runs are
# quick: each step is skipped when its inputs have not changed since the last
# successful run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${PREFLOOP_VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-python3}"

log() { printf '\033[1;34m[prefloop]\033[0m %s\n' "$*"; }

"$PYTHON_BIN" - <<'PY' || { echo "prefloop needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

setup_python() {
    local reqfile="$1"
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating virtualenv in $VENV"
        "$PYTHON_BIN" -m venv "$VENV"
    fi
    local stamp="$VENV/.prefloop-$(basename "$reqfile").sha"
    local want
    want="$(cat requirements*.txt | sha256sum | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        log "installing Python packages from $reqfile"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        # torch first (its build is the machine's: CPU here, CUDA on a GPU host),
        # then the lock, every package checked against its recorded hashes.
        "$VENV/bin/python" -m pip install --quiet -r requirements-torch.txt
        "$VENV/bin/python" -m pip install --quiet --require-hashes -r "$reqfile"
        echo "$want" > "$stamp"
    fi
}

setup_node() {
    command -v npm >/dev/null || { echo "npm is needed for the front-end packages (install Node.js 18+)" >&2; exit 1; }
    local stamp="node_modules/.prefloop-lock.sha"
    local want
    want="$(sha256sum package-lock.json | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        log "installing front-end packages (npm ci)"
        npm ci --no-audit --no-fund --loglevel=error
        echo "$want" > "$stamp"
    fi
}

export PATH="$VENV/bin:$PATH"
export DJANGO_SETTINGS_MODULE=webapp.settings
