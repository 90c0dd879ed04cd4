#!/usr/bin/env bash
# Build storycue's images where only Debian's package mirror and PyPI are reachable (no
# Docker Hub, ghcr.io or PyTorch wheel index): the build farm of an air-gapped platform,
# or this project's own CI machines.
#
#   deploy/docker/build-local.sh [cpu|gpu|all]      (default: all; run as root)
#
# 1. storycue-base:bookworm  Debian bookworm (minbase + python3.11, venv, CA certificates)
#                             made by debootstrap and `docker import`ed; it trusts the
#                             build machine's CA bundle (CA_BUNDLE), which is how PyPI is
#                             reached through a TLS-inspecting proxy
# 2. storycue-uv:<version>    uv from PyPI, at /uv like ghcr.io/astral-sh/uv
# 3. storycue:<version>-cpu and -gpu from deploy/docker/Dockerfile with those as bases;
#    torch comes from PyPI (TORCH_INDEX), whose Linux x86_64 wheel is the CUDA build
#
# Each build's wall time and the image sizes are written to $RESULTS as JSON.
# Needs a running Docker daemon (dockerd 20.10+ with its built-in BuildKit), debootstrap,
# and network from build containers (--network host: a daemon started with --bridge=none
# has no other). Environment (defaults in brackets):
#   DEBIAN_MIRROR [http://deb.debian.org/debian]   CA_BUNDLE [/etc/ssl/certs/ca-certificates.crt]
#   BUILD_DIR [build/docker]   RESULTS [bench/results/images.json]   VERSION [pyproject's]
#   UV_VERSION [0.6.14]   TORCH_INDEX [https://pypi.org/simple]   REBUILD_BASE [0]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

targets="${1:-all}"
case "$targets" in
    all) targets="cpu gpu" ;;
    cpu | gpu) ;;
    *) echo "usage: $0 [cpu|gpu|all]" >&2; exit 2 ;;
esac

DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
BUILD_DIR="${BUILD_DIR:-build/docker}"
RESULTS="${RESULTS:-bench/results/images.json}"
UV_VERSION="${UV_VERSION:-0.6.14}"
TORCH_INDEX="${TORCH_INDEX:-https://pypi.org/simple}"
VERSION="${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)}"
BASE="storycue-base:bookworm"
UV_IMAGE="storycue-uv:${UV_VERSION}"
DOCKER="${DOCKER:-docker}"
export DOCKER_BUILDKIT=1

say() { printf '[build-local %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
need() { command -v "$1" >/dev/null || { echo "$1 is required ($2)" >&2; exit 1; }; }
need "$DOCKER" "Debian: apt-get install docker.io; then dockerd"
# A Docker CLI of 23 or newer builds with BuildKit only through the buildx plugin; the 20.10
# CLI (Debian's docker.io) drives the daemon's built-in BuildKit itself.
if ! "$DOCKER" buildx version >/dev/null 2>&1; then
    major=$("$DOCKER" version -f '{{.Client.Version}}' 2>/dev/null | cut -d. -f1 || echo 0)
    if [ "${major:-0}" -ge 23 ] 2>/dev/null; then
        if [ -x /usr/bin/docker ] && [ "$(/usr/bin/docker version -f '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)" = 20 ]; then
            DOCKER=/usr/bin/docker
        else
            echo "$DOCKER $major.x needs the buildx plugin for BuildKit builds; install it or set DOCKER" >&2
            exit 1
        fi
    fi
fi
"$DOCKER" info >/dev/null 2>&1 || {
    echo "no Docker daemon answers; start one, e.g.:" >&2
    echo "  dockerd --iptables=false --bridge=none &   (add --storage-driver=vfs where overlay2 fails)" >&2
    exit 1
}
[ -r "$CA_BUNDLE" ] || { echo "CA_BUNDLE $CA_BUNDLE is not readable" >&2; exit 1; }
mkdir -p "$BUILD_DIR" "$(dirname "$RESULTS")"

# ---- 1. the Debian base -----------------------------------------------------------------------
if [ "${REBUILD_BASE:-0}" = 1 ] || ! "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
    need debootstrap "Debian: apt-get install debootstrap"
    rootfs="$BUILD_DIR/rootfs-bookworm"
    rm -rf "$rootfs"
    say "debootstrap bookworm from $DEBIAN_MIRROR into $rootfs"
    t0=$(date +%s)
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$DEBIAN_MIRROR" >"$BUILD_DIR/debootstrap.log" 2>&1 || {
        tail -20 "$BUILD_DIR/debootstrap.log" >&2
        exit 1
    }
    cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
    tar -C "$rootfs" -c . | "$DOCKER" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["/bin/bash"]' \
        - "$BASE" >/dev/null
    base_s=$(($(date +%s) - t0))
    rm -rf "$rootfs"
    say "$BASE imported in ${base_s}s"
else
    base_s=0
    say "$BASE exists (REBUILD_BASE=1 to make it again)"
fi

# ---- 2. uv from PyPI --------------------------------------------------------------------------
if ! "$DOCKER" image inspect "$UV_IMAGE" >/dev/null 2>&1; then
    say "building $UV_IMAGE (uv $UV_VERSION from PyPI)"
    "$DOCKER" build --network host -t "$UV_IMAGE" -f - "$BUILD_DIR" <<EOF
FROM $BASE
RUN python3 -m venv /tmp/uv && /tmp/uv/bin/pip install --no-cache-dir uv==$UV_VERSION \\
 && cp /tmp/uv/bin/uv /uv && rm -rf /tmp/uv
EOF
fi

# ---- 3. the storycue images -------------------------------------------------------------------
json_rows=()
for target in $targets; do
    tag="storycue:${VERSION}-${target}"
    say "building $tag (target $target; torch from $TORCH_INDEX)"
    t0=$(date +%s)
    "$DOCKER" build --network host -f deploy/docker/Dockerfile --target "$target" \
        --build-arg PYTHON_IMAGE="$BASE" \
        --build-arg CUDA_IMAGE="$BASE" \
        --build-arg UV_IMAGE="$UV_IMAGE" \
        --build-arg PYTHON=/usr/bin/python3.11 \
        --build-arg GPU_PYTHON=/usr/bin/python3.11 \
        --build-arg TORCH_CPU_INDEX="$TORCH_INDEX" \
        --build-arg VERSION="$VERSION" \
        --progress plain -t "$tag" . 2>&1 | tee "$BUILD_DIR/build-$target.log" |
        grep --line-buffered -E '^#[0-9]+ (\[|DONE|ERROR)' >&2 || true
    status=${PIPESTATUS[0]}
    [ "$status" = 0 ] || { tail -30 "$BUILD_DIR/build-$target.log" >&2; exit "$status"; }
    build_s=$(($(date +%s) - t0))
    size=$("$DOCKER" image inspect -f '{{.Size}}' "$tag")
    torch=$("$DOCKER" run --rm --network none --entrypoint /opt/venv/bin/python "$tag" \
        -c 'import torch; c = torch.version.cuda; print(torch.__version__ + (f" (CUDA {c} build)" if c else " (CPU build)"))')
    say "$tag: ${build_s}s, $((size / 1000000)) MB, torch $torch"
    json_rows+=("{\"image\": \"$tag\", \"target\": \"$target\", \"build_s\": $build_s, \"size_bytes\": $size, \"torch\": \"$torch\"}")
done

{
    printf '{\n  "built_at": "%s",\n  "host": "%s",\n  "docker": "%s",\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc) cores" "$("$DOCKER" version -f '{{.Server.Version}}')"
    printf '  "base": "%s (debootstrap bookworm, minbase + python3.11)",\n  "base_build_s": %s,\n' "$BASE" "$base_s"
    printf '  "torch_index": "%s",\n  "images": [\n' "$TORCH_INDEX"
    for i in "${!json_rows[@]}"; do
        sep=","; [ "$i" = $((${#json_rows[@]} - 1)) ] && sep=""
        printf '    %s%s\n' "${json_rows[$i]}" "$sep"
    done
    printf '  ]\n}\n'
} >"$RESULTS"
say "wrote $RESULTS"
say "the build cache keeps every layer (about 50 GB for both targets): docker builder prune -af frees it"
