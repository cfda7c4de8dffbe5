#!/usr/bin/env bash
# `make image`: build the proxy's image (docker/Dockerfile) as UA_IMAGE (default ua-proxy:latest)
# with docker when a Docker engine answers, else with podman. Podman builds offline when no
# registry serves the base image: a Debian 12 base is made with debootstrap from the mirror
# apt already uses and imported under the name the Dockerfile asks for.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${UA_IMAGE:-ua-proxy:latest}
BASE=docker.io/library/debian:bookworm-slim

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  exec docker build -f docker/Dockerfile -t "$IMAGE" .
fi
if ! command -v podman >/dev/null; then
  echo "image: neither a Docker engine nor podman (make setup installs podman)" >&2
  exit 1
fi

# crun fails on this kind of host ("cgroups in hybrid mode"), and the runtime may not raise
# the host's resource limits: podman reads its settings from scripts/containers.conf.
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/scripts/containers.conf}

if ! podman image exists "$BASE" && ! timeout 60 podman pull -q "$BASE" >/dev/null 2>&1; then
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  mirror=${mirror:-$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null)}
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "image: no registry serves $BASE; building it with debootstrap from $mirror"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  tar -C "$root" -c . | podman import -q - "$BASE" >/dev/null
fi

# pip inside the build trusts what pip on this host trusts: a CA bundle named in the host's
# pip configuration (a package proxy's own CA, say) is mounted with a pip.conf naming it.
# Nothing of it lands in the image; a build on a plain host mounts nothing.
mounts=()
cert=${PIP_CERT:-$(python3 -m pip config list 2>/dev/null | sed -n "s/^[^=]*\.cert='\(.*\)'$/\1/p" | head -1)}
if [ -n "$cert" ] && [ -r "$cert" ]; then
  conf=$(mktemp)
  trap 'rm -rf "${root:-}" "$conf"' EXIT
  printf '[global]\ncert = /run/pip-host-ca.pem\n' > "$conf"
  mounts=(-v "$cert:/run/pip-host-ca.pem:ro" -v "$conf:/etc/pip.conf:ro")
fi

# --format docker: the OCI image format has no HEALTHCHECK, and podman would drop it.
podman build --format docker --isolation chroot --network=host "${mounts[@]}" \
  -f docker/Dockerfile -t "$IMAGE" .
