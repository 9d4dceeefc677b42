# shellcheck shell=bash
# Validate k8s-cronjob.yaml offline against the Kubernetes OpenAPI schemas bundled in the
# PyPI package kubernetes-validate. No cluster is needed, and nothing is downloaded
# besides the package itself.
#
# Source it from the CI script (`bash .ci/validate-k8s.sh`) or run it with bash. Run it from
# the repository root, or set K8S_MANIFEST. On failure it exits non-zero; when sourced,
# that ends the calling CI script too.
#
# Knobs (environment):
#   K8S_MANIFEST             manifest to check           (default: k8s-cronjob.yaml)
#   K8S_VALIDATE_VERSIONS    Kubernetes versions to check (default: "1.31.0 1.33.0 1.37.0")
#     1.31 is the floor (Job podFailurePolicy GA; CronJob timeZone GA since 1.27),
#     1.33 the main target, 1.37 the newest schema bundled in kubernetes-validate 1.37.0.
#   K8S_VALIDATE_VENV        where to put the venv (default: ${TMPDIR:-/tmp}/roster-sync-kubernetes-validate-1.37.0)

# Every step checks its own status: `set -e` has no effect inside a function that is
# called as `f || exit 1`.
roster_sync_validate_k8s() (
    set -uo pipefail
    local pinned="1.37.0"
    local manifest="${K8S_MANIFEST:-k8s-cronjob.yaml}"
    local versions="${K8S_VALIDATE_VERSIONS:-1.31.0 1.33.0 1.37.0}"
    local venv="${K8S_VALIDATE_VENV:-${TMPDIR:-/tmp}/roster-sync-kubernetes-validate-${pinned}}"

    [[ -f "$manifest" ]] || { echo "validate-k8s: $manifest not found (run from the repository root)" >&2; return 1; }

    # A venv of our own, with the pinned version. It is reused when it already has that version.
    if ! "$venv/bin/python" -m pip show kubernetes-validate 2>/dev/null | grep -qx "Version: ${pinned}"; then
        rm -rf "$venv"
        python3 -m venv "$venv" || { echo "validate-k8s: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; return 1; }
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==${pinned}" \
            || { echo "validate-k8s: pip install kubernetes-validate==${pinned} failed" >&2; return 1; }
    fi

    local args=() v
    for v in $versions; do args+=(-k "$v"); done

    # --strict rejects unknown fields, such as a typo in a field name.
    local out rc=0
    out="$("$venv/bin/kubernetes-validate" --strict "${args[@]}" "$manifest" 2>&1)" || rc=$?
    printf '%s\n' "$out"
    if (( rc != 0 )); then
        echo "validate-k8s: FAILED (kubernetes-validate exit $rc)" >&2; return 1
    fi
    # kubernetes-validate exits 0 when it has no schema for a kind (e.g. a misspelt kind),
    # and only prints WARN. Treat that as a failure.
    if grep -q '^WARN' <<<"$out"; then
        echo "validate-k8s: FAILED (a resource could not be checked against a schema)" >&2; return 1
    fi

    # Every document must have passed for every version. Then add the API-server rules
    # that JSON schemas cannot express. These checks use PyYAML from the same venv.
    local nversions
    nversions=$(wc -w <<<"$versions")
    PASSED="$(grep -c ' passed for resource ' <<<"$out" || true)" NVERSIONS="$nversions" \
        "$venv/bin/python" - "$manifest" <<'PY' || { echo "validate-k8s: FAILED (semantic checks)" >&2; return 1; }
import os, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
errors = []
expected = len(docs) * int(os.environ["NVERSIONS"])
if int(os.environ["PASSED"]) != expected or not docs:
    errors.append(f"{os.environ['PASSED']} resource checks passed, expected {expected}")
for d in docs:
    if d.get("kind") != "CronJob":
        continue
    spec = d["spec"]
    job = spec["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    names = {c["name"] for c in pod.get("containers", [])}
    name = d["metadata"]["name"]
    if len(name) > 52:
        errors.append(f"cronjob/{name}: name longer than 52 characters")
    if not spec.get("timeZone"):
        errors.append(f"cronjob/{name}: no explicit timeZone")
    if spec.get("concurrencyPolicy") != "Forbid":
        errors.append(f"cronjob/{name}: concurrencyPolicy is not Forbid")
    pfp = job.get("podFailurePolicy")
    if pfp:
        if pod.get("restartPolicy") != "Never":
            errors.append(f"cronjob/{name}: podFailurePolicy requires restartPolicy: Never")
        for rule in pfp.get("rules", []):
            oec = rule.get("onExitCodes")
            if not oec:
                continue
            if oec.get("containerName") and oec["containerName"] not in names:
                errors.append(f"cronjob/{name}: onExitCodes.containerName {oec['containerName']!r} is not a container")
            vals = oec.get("values", [])
            if vals != sorted(set(vals)):
                errors.append(f"cronjob/{name}: onExitCodes.values must be ascending and unique: {vals}")
            if oec.get("operator") == "In" and 0 in vals:
                errors.append(f"cronjob/{name}: exit code 0 is not allowed with operator In")
for e in errors:
    print("ERROR", e)
sys.exit(1 if errors else 0)
PY
    echo "validate-k8s: OK ($manifest; Kubernetes $versions)"
)

roster_sync_validate_k8s || exit 1
