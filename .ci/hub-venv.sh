#!/usr/bin/env bash
# Creates (or reuses) the pinned Python venv with real JupyterHub and KubeSpawner that the
# hub-side tests and the JupyterHub end-to-end tests use. Prints the venv's python path.
# The venv lives in target/hub-venv (ignored by git), keyed by the requirements' hash, so a
# changed pin list makes a fresh venv.
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=hub/requirements.txt
venv=${ROSTER_SYNC_HUB_VENV:-$PWD/target/hub-venv}
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
    echo "$want" > "$stamp"
fi
echo "$venv/bin/python"
