#!/usr/bin/env bash
# Runs the e2e tests against a real `kind` cluster instead of the built-in test bed.
#
#   tests/cluster/kind-e2e.sh [pytest args...]        e.g. tests/cluster/kind-e2e.sh -k testbed
#
# Needs Docker and `kind` on PATH (not available on the project's CI machines, which use the test
# bed). It creates (or reuses) the cluster $KIND_CLUSTER (default: streamjob-e2e), builds the
# streamjob image from the repo's Dockerfile and loads it into the cluster when a Dockerfile exists,
# writes the cluster's kubeconfig to a temporary file and runs `pytest -m e2e` with
# STREAMJOB_E2E_KUBECONFIG pointing at it: the fixtures in tests/cluster/fixtures.py then use that
# cluster and do not start the bed. Tests that need the bed's node agent (pod IPs on 127.x, crash
# injection, reading a pod's log file) skip there. Set KIND_KEEP=1 to keep a cluster this script
# created; a cluster that already existed is always kept.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cluster="${KIND_CLUSTER:-streamjob-e2e}"
image="${STREAMJOB_IMAGE:-streamjob:e2e}"

for tool in docker kind; do
    command -v "$tool" >/dev/null || { echo "kind-e2e.sh: '$tool' is not on PATH" >&2; exit 2; }
done

created=0
if ! kind get clusters 2>/dev/null | grep -qx "$cluster"; then
    kind create cluster --name "$cluster" --wait 120s
    created=1
fi
cleanup() {
    if [[ "$created" == 1 && "${KIND_KEEP:-0}" != 1 ]]; then
        kind delete cluster --name "$cluster"
    fi
}
trap cleanup EXIT

if [[ -f "$repo/Dockerfile" ]]; then
    docker build -t "$image" "$repo"
    kind load docker-image "$image" --name "$cluster"
fi
# The self-tests' pods run python3 from this image.
docker pull python:3.12-slim >/dev/null
kind load docker-image python:3.12-slim --name "$cluster"

kubeconfig="$(mktemp)"
kind get kubeconfig --name "$cluster" >"$kubeconfig"
export STREAMJOB_E2E_KUBECONFIG="$kubeconfig"
export STREAMJOB_E2E_IMAGE="$image"
cd "$repo"
status=0
"${PYTHON:-.venv/bin/python}" -m pytest -m e2e tests/e2e "$@" || status=$?
rm -f "$kubeconfig"
exit "$status"
