#!/usr/bin/env bash
# Hub-side tests against the real JupyterHub and KubeSpawner in the pinned venv.
# Fails when the pinned versions are not importable (so CI can never fall back to the
# stand-in path), on any failing test, when a test was skipped, and when none ran.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(bash .ci/hub-venv.sh)
"$python" - <<'PY'
import importlib.metadata as md
import sys
import unittest

want = {"jupyterhub": "5.5.0", "jupyterhub-kubespawner": "7.1.0"}
import jupyterhub, kubespawner  # noqa: E401,F401  (fails loudly when missing)
for dist, version in want.items():
    have = md.version(dist)
    if have != version:
        sys.exit("hub-tests: {} {} installed, {} required".format(dist, have, version))
print("hub-tests: jupyterhub {} and jupyterhub-kubespawner {} importable".format(*want.values()), flush=True)

suite = unittest.defaultTestLoader.discover("hub")
result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
if result.testsRun == 0:
    sys.exit("hub-tests: no test ran")
if result.skipped:
    sys.exit("hub-tests: {} test(s) skipped; with the pinned venv every test must run".format(len(result.skipped)))
sys.exit(0 if result.wasSuccessful() else 1)
PY
