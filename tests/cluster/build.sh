#!/usr/bin/env bash
# Builds the e2e test bed's binaries from their pinned Go modules and caches them OUTSIDE the repo.
#
#   tests/cluster/build.sh controlplane   -> prints the path of the `testbed` binary (etcd,
#                                            kube-apiserver, kube-controller-manager)
#   tests/cluster/build.sh helm           -> prints the path of the `helm` binary
#   tests/cluster/build.sh nodes          -> prints the path of the `nodebed` binary (kubelet,
#                                            kube-proxy, kube-scheduler: tests/containers/go)
#   tests/cluster/build.sh pause          -> prints the path of the sandbox container's `pause` binary
#   tests/cluster/build.sh kube-router    -> prints the path of `kube-router` (the container tier's
#                                            NetworkPolicy firewall: tests/containers/kube-router)
#   tests/cluster/build.sh all            -> builds the control plane and helm, prints both paths
#
# Called by the pytest fixtures in tests/cluster/ (tests/cluster/binaries.py) on first use, and
# usable by hand or from a Makefile prerequisite. The cache directory is
# $STREAMJOB_TESTBED_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/streamjob-testbed; each binary lives in
# a sub-directory named by the hash of its module's go.mod, go.sum and Go sources, so a second build
# of unchanged sources only checks that hash. Build logs go next to the binary (build.log).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${STREAMJOB_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamjob-testbed}"
export GOFLAGS="${GOFLAGS:--mod=mod} -trimpath"
export CGO_ENABLED=0
GO="${GO:-go}"
# The toolchain's usual home, for shells whose PATH lacks it.
if ! command -v "$GO" >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    GO=/usr/local/go/bin/go
fi

# key DIR: a short hash of a module's go.mod, go.sum and Go sources.
key() {
    (cd "$1" && cat go.mod go.sum $(find . -name '*.go' | LC_ALL=C sort)) | sha256sum | cut -c1-16
}

# build NAME MODULE_DIR PACKAGE [LDFLAGS]: builds PACKAGE in MODULE_DIR unless cached; prints the binary.
build() {
    local name="$1" module="$2" package="$3" ldflags="${4:-}"
    local dir="$cache/$name-$(key "$module")"
    local binary="$dir/$name"
    if [[ -x "$binary" ]]; then
        echo "$binary"
        return
    fi
    mkdir -p "$dir"
    # One build at a time per binary, even across concurrent test runs.
    exec {lock}>"$dir/.lock"
    flock "$lock"
    if [[ ! -x "$binary" ]]; then
        command -v "$GO" >/dev/null || { echo "build.sh: the Go toolchain ($GO) is not on PATH" >&2; exit 3; }
        local start=$SECONDS
        echo "build.sh: building $name in $module (cache $dir); the first build takes minutes" >&2
        if ! (cd "$module" && "$GO" build -ldflags="-s -w $ldflags" -o "$binary.tmp" "$package") >"$dir/build.log" 2>&1; then
            echo "build.sh: building $name failed; log $dir/build.log:" >&2
            tail -n 40 "$dir/build.log" >&2
            exit 1
        fi
        mv "$binary.tmp" "$binary"
        echo "build.sh: built $name in $((SECONDS - start))s" >&2
    fi
    flock -u "$lock"
    echo "$binary"
}

# k8s_version_ldflags MODULE_DIR: -X flags giving the Kubernetes components the version pinned in
# go.mod (a binary built from modules otherwise reports v0.0.0-master, which kubelets show to users).
k8s_version_ldflags() {
    local version major minor
    version="$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$1/go.mod")"
    major="${version#v}"; major="${major%%.*}"
    minor="${version#v*.}"; minor="${minor%%.*}"
    local pkg=k8s.io/component-base/version
    echo "-X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
}

case "${1:-all}" in
    controlplane) build testbed "$here/go" . ;;
    helm) build helm "$here/helm" helm.sh/helm/v3/cmd/helm ;;
    nodes)
        nodes="$here/../containers/go"
        build nodebed "$nodes" . "$(k8s_version_ldflags "$nodes")"
        ;;
    pause) build pause "$here/../containers/go" ./pause ;;
    kube-router)
        router="$here/../containers/kube-router"
        version="$(awk '$1 == "github.com/cloudnativelabs/kube-router/v2" { print $2; exit }' "$router/go.mod")"
        build kube-router "$router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router \
            "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$version"
        ;;
    all)
        build testbed "$here/go" .
        build helm "$here/helm" helm.sh/helm/v3/cmd/helm
        ;;
    *) echo "usage: $0 [controlplane|helm|nodes|pause|kube-router|all]" >&2; exit 2 ;;
esac
