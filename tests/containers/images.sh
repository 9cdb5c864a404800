#!/usr/bin/env bash
# Builds the streamjob image (the repository's Dockerfile) and the examples image on a machine
# without container-registry access, and caches both OUTSIDE the repo, keyed by their inputs.
#
#   tests/containers/images.sh packages   -> installs Debian's docker.io, containerd, runc, CNI
#                                            plugins, debootstrap, iptables and ipset (kube-router's
#                                            firewall) when missing (root, apt-get)
#   tests/containers/images.sh base       -> prints the local base image (Debian bookworm's python3
#                                            from a debootstrap rootfs, `docker import`ed)
#   tests/containers/images.sh streamjob  -> prints the path of the streamjob image's tarball
#   tests/containers/images.sh examples   -> prints the path of the examples image's tarball
#   tests/containers/images.sh jobs       -> prints the path of the test jobs' image tarball
#                                            (streamjob-test-jobs:1 and :2, FROM the examples image,
#                                            with tests/e2e's counting job as counting_job.py)
#   tests/containers/images.sh pause      -> prints the path of the sandbox image's tarball
#                                            (streamjob-pause:1, tests/containers/go/pause)
#   tests/containers/images.sh bundle     -> prints the path of one tarball holding all of the images
#                                            above (shared layers once: what the test nodes import)
#   tests/containers/images.sh all        -> all of the above (default)
#
# The streamjob image is `docker build --build-arg PYTHON_IMAGE=<base> .`, the examples image is
# built FROM it exactly as docs/user-guide.md ("Building the job image") tells users to. Each image
# is saved as a tarball (what `ctr images import` loads into the test nodes) under
# $STREAMJOB_CONTAINERS_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/streamjob-containers, named by the
# hash of its inputs, so an unchanged tree only hashes its files. dockerd is started (and left
# running, its log in the cache) when no daemon answers. Called by tests/containers/fixtures.py and
# `make image`; docs/operations.md, "Building the image without a registry".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${STREAMJOB_CONTAINERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamjob-containers}"
# Debian's client: a newer docker client without buildx may come first on PATH.
DOCKER="${DOCKER:-/usr/bin/docker}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_PACKAGES=python3,python3-venv,ca-certificates
VERSION="$(awk -F'"' '/^version = / { print $2; exit }' "$repo/pyproject.toml")"
mkdir -p "$cache"

log() { echo "images.sh: $*" >&2; }

# Serialises builds across concurrent callers (tests and a shell by hand).
exec {lock}>"$cache/.lock"
flock "$lock"

packages() {
    local missing=()
    [[ -x /usr/bin/docker && -x /usr/sbin/dockerd ]] || missing+=(docker.io)
    command -v containerd >/dev/null || missing+=(containerd)
    command -v runc >/dev/null || missing+=(runc)
    [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v iptables >/dev/null || missing+=(iptables)
    command -v ipset >/dev/null || missing+=(ipset)
    if ((${#missing[@]} == 0)); then
        return
    fi
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
        log "missing ${missing[*]}: install them with apt-get (needs root on Debian/Ubuntu)"
        exit 3
    fi
    log "installing ${missing[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >"$cache/apt.log" 2>&1 || true
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
        >>"$cache/apt.log" 2>&1; then
        log "apt-get install ${missing[*]} failed; log $cache/apt.log:"
        tail -n 20 "$cache/apt.log" >&2
        exit 3
    fi
}

# dockerd: started in the background when no daemon answers on the default socket.
daemon() {
    if "$DOCKER" info >/dev/null 2>&1; then
        return
    fi
    log "starting dockerd (log $cache/dockerd.log)"
    # The build lock stays with this script: a daemon holding it would block every later build.
    setsid /usr/sbin/dockerd >>"$cache/dockerd.log" 2>&1 </dev/null {lock}>&- &
    for _ in $(seq 1 120); do
        if "$DOCKER" info >/dev/null 2>&1; then
            return
        fi
        sleep 0.5
    done
    log "dockerd did not answer within 60s; log $cache/dockerd.log:"
    tail -n 20 "$cache/dockerd.log" >&2
    exit 1
}

# key FILE...: a short hash of the given files' names and contents.
key() {
    (cd "$repo" && for file in "$@"; do printf '%s\n' "$file"; cat "$file"; done) | sha256sum | cut -c1-16
}

# save TAG TARBALL: writes TAG to TARBALL (and its image id to TARBALL.id) atomically.
save() {
    "$DOCKER" save -o "$2.tmp" "$1"
    "$DOCKER" image inspect --format '{{.Id}}' "$1" >"$2.id"
    mv "$2.tmp" "$2"
    prune "$2"
}

# prune TARBALL: removes the older tarballs of the same image (same name up to the key), which no
# current input can ask for again; the cache keeps one tarball per image.
prune() {
    local stem="${1%-*.tar}"
    find "$cache" -maxdepth 1 -name "$(basename "$stem")-*.tar*" ! -name "$(basename "$1")*" -delete
}

# ensure_loaded TAG TARBALL: loads TARBALL into dockerd unless TAG already names the saved image.
ensure_loaded() {
    local id
    id="$("$DOCKER" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true)"
    if [[ -z $id || $id != "$(cat "$2.id" 2>/dev/null)" ]]; then
        "$DOCKER" load -i "$2" >/dev/null
    fi
}

# The base: a Debian rootfs with python3 and the machine's CA certificates (pip inside the build may
# go through a proxy whose CA only the machine's bundle holds).
base() {
    local ca=/etc/ssl/certs/ca-certificates.crt
    local k
    k="$( (echo "$SUITE $MIRROR $BASE_PACKAGES"; sed -n '/^base()/,/^}/p' "${BASH_SOURCE[0]}"; cat "$ca") \
        | sha256sum | cut -c1-16)"
    local tag="streamjob-base:$SUITE-$k" tarball="$cache/base-$SUITE-$k.tar"
    if [[ ! -s $tarball ]]; then
        local start=$SECONDS rootfs="$cache/rootfs.tmp"
        rm -rf "$rootfs"
        log "debootstrap $SUITE ($BASE_PACKAGES) into $rootfs; log $cache/debootstrap.log"
        if ! debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
            >"$cache/debootstrap.log" 2>&1; then
            log "debootstrap failed; log $cache/debootstrap.log:"
            tail -n 20 "$cache/debootstrap.log" >&2
            exit 1
        fi
        cp "$ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" --numeric-owner -c . \
            | "$DOCKER" import \
                --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
                --change "ENV PIP_CERT=$ca" \
                --change 'CMD ["python3"]' - "$tag" >/dev/null
        save "$tag" "$tarball"
        rm -rf "$rootfs"
        log "base image $tag in $((SECONDS - start))s"
    fi
    ensure_loaded "$tag" "$tarball"
    echo "$tag"
}

# The inputs of the streamjob image: what .dockerignore lets into the build context, and the Dockerfile.
streamjob_inputs() {
    (cd "$repo" && { echo Dockerfile; echo .dockerignore; echo pyproject.toml; echo setup.py; echo README.md
        echo constraints.txt; find worker operator -type f -not -path '*/__pycache__/*' -not -name '*.pyc' \
            | LC_ALL=C sort; })
}

streamjob() {
    local base_tag k
    base_tag="$(base)"
    # shellcheck disable=SC2046
    k="$( (echo "$base_tag"; key $(streamjob_inputs)) | sha256sum | cut -c1-16)"
    local tag="streamjob:$VERSION" tarball="$cache/streamjob-$VERSION-$k.tar"
    if [[ ! -s $tarball ]]; then
        local start=$SECONDS
        log "docker build streamjob:$VERSION FROM $base_tag; log $cache/build-streamjob.log"
        if ! DOCKER_BUILDKIT=0 "$DOCKER" build --build-arg "PYTHON_IMAGE=$base_tag" -t "$tag" "$repo" \
            >"$cache/build-streamjob.log" 2>&1; then
            log "docker build failed; log $cache/build-streamjob.log:"
            tail -n 30 "$cache/build-streamjob.log" >&2
            exit 1
        fi
        save "$tag" "$tarball"
        log "built $tag in $((SECONDS - start))s"
    fi
    ensure_loaded "$tag" "$tarball"
    echo "$tarball"
}

# The examples image, built as docs/user-guide.md says: FROM streamjob:<version>, the package copied
# to /opt/jobs/<package>/ owned by the image's user.
examples() {
    local base_tarball k
    base_tarball="$(streamjob)"
    # shellcheck disable=SC2046
    k="$( (basename "$base_tarball"; key $(cd "$repo" && ls examples/*.py)) | sha256sum | cut -c1-16)"
    local tag="streamjob-examples:$VERSION" tarball="$cache/examples-$VERSION-$k.tar"
    if [[ ! -s $tarball ]]; then
        local context="$cache/examples-context.tmp"
        rm -rf "$context"
        mkdir -p "$context/examples"
        cp "$repo"/examples/*.py "$context/examples/"
        cat >"$context/Dockerfile" <<EOF
FROM streamjob:$VERSION
COPY --chown=10001:10001 examples/ /opt/jobs/examples/
EOF
        if ! DOCKER_BUILDKIT=0 "$DOCKER" build -t "$tag" "$context" >"$cache/build-examples.log" 2>&1; then
            log "docker build of the examples image failed; log $cache/build-examples.log:"
            tail -n 30 "$cache/build-examples.log" >&2
            exit 1
        fi
        save "$tag" "$tarball"
        rm -rf "$context"
    fi
    ensure_loaded "$tag" "$tarball"
    echo "$tarball"
}

# The e2e counting job (exact output to S3) in an image FROM the examples image, under two tags: a
# savepoint upgrade changes the job's image from :1 to :2.
jobs() {
    local base_tarball k job="tests/e2e/test_operator_job_counting.py"
    base_tarball="$(examples)"
    k="$( (basename "$base_tarball"; key "$job") | sha256sum | cut -c1-16)"
    local tarball="$cache/test-jobs-$k.tar"
    if [[ ! -s $tarball ]]; then
        local context="$cache/jobs-context.tmp"
        rm -rf "$context"
        mkdir -p "$context"
        cp "$repo/$job" "$context/counting_job.py"
        cat >"$context/Dockerfile" <<EOF
FROM streamjob-examples:$VERSION
COPY --chown=10001:10001 counting_job.py /opt/jobs/counting_job.py
EOF
        if ! DOCKER_BUILDKIT=0 "$DOCKER" build -t streamjob-test-jobs:1 -t streamjob-test-jobs:2 "$context" \
            >"$cache/build-jobs.log" 2>&1; then
            log "docker build of the test jobs' image failed; log $cache/build-jobs.log:"
            tail -n 30 "$cache/build-jobs.log" >&2
            exit 1
        fi
        "$DOCKER" save -o "$tarball.tmp" streamjob-test-jobs:1 streamjob-test-jobs:2
        mv "$tarball.tmp" "$tarball"
        prune "$tarball"
        rm -rf "$context"
    fi
    if ! "$DOCKER" image inspect streamjob-test-jobs:1 streamjob-test-jobs:2 >/dev/null 2>&1; then
        "$DOCKER" load -i "$tarball" >/dev/null
    fi
    echo "$tarball"
}

# The nodes' sandbox image: the pause binary of tests/containers/go/pause alone in an imported rootfs.
pause() {
    local binary k
    binary="$(bash "$repo/tests/cluster/build.sh" pause)"
    k="$(sha256sum "$binary" | cut -c1-16)"
    local tag=streamjob-pause:1 tarball="$cache/pause-$k.tar"
    if [[ ! -s $tarball ]]; then
        local rootfs="$cache/pause-rootfs.tmp"
        rm -rf "$rootfs"
        mkdir -p "$rootfs"
        cp "$binary" "$rootfs/pause"
        tar -C "$rootfs" --numeric-owner -c . \
            | "$DOCKER" import --change 'ENTRYPOINT ["/pause"]' --change 'USER 65535:65535' - "$tag" >/dev/null
        save "$tag" "$tarball"
        rm -rf "$rootfs"
    fi
    ensure_loaded "$tag" "$tarball"
    echo "$tarball"
}

# Every image in one tarball: the streamjob layers are stored once instead of once per image, which
# makes loading them into each node three times faster.
bundle() {
    local parts=() k
    parts+=("$(streamjob)" "$(examples)" "$(jobs)" "$(pause)")
    k="$(for part in "${parts[@]}"; do basename "$part"; done | sha256sum | cut -c1-16)"
    local tarball="$cache/bundle-$k.tar"
    if [[ ! -s $tarball ]]; then
        "$DOCKER" save -o "$tarball.tmp" "streamjob:$VERSION" "streamjob-examples:$VERSION" \
            streamjob-test-jobs:1 streamjob-test-jobs:2 streamjob-pause:1
        mv "$tarball.tmp" "$tarball"
        prune "$tarball"
    fi
    echo "$tarball"
}

case "${1:-all}" in
    packages) packages ;;
    base) packages; daemon; base ;;
    streamjob) packages; daemon; streamjob ;;
    examples) packages; daemon; examples ;;
    jobs) packages; daemon; jobs ;;
    pause) packages; daemon; pause ;;
    bundle) packages; daemon; bundle ;;
    all) packages; daemon; base; streamjob; examples; jobs; pause ;;
    *) echo "usage: $0 [packages|base|streamjob|examples|jobs|pause|bundle|all]" >&2; exit 2 ;;
esac
