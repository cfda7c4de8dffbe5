#!/usr/bin/env bash
# Prepare what `make run` and `make test` need, installing only what is missing:
# Debian packages (as root), then the project's venv made by Debian's Python, which is
# the interpreter Kamailio embeds.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(kamailio kamailio-python3-modules kamailio-websocket-modules kamailio-tls-modules
          kamailio-redis-modules kamailio-utils-modules kamailio-extra-modules
          kamailio-presence-modules kamailio-json-modules redis-server rtpengine-daemon
          sip-tester openssl chromium baresip prometheus
          python3-venv python3-dev
          podman buildah podman-compose debootstrap runc catatonit netavark aardvark-dns)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# Node.js runs the browser test's driver: any node and npm on PATH will do.
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The proxy's packages (requirements.txt, all the image installs) and the tests' and
# benchmarks' (requirements-test.txt), installed again when either file changes.
stamp=.venv/.requirements
if [ ! -x .venv/bin/python ] || ! cat requirements.txt requirements-test.txt | cmp -s - "$stamp"; then
  echo "setup: preparing .venv"
  /usr/bin/python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-test.txt
  cat requirements.txt requirements-test.txt > "$stamp"
fi

# `ua-admin` (lib/tools/admin_cli.py) as a command of the venv: an editable install of this
# repository (pyproject.toml). The build leaves a *.egg-info here that nothing needs.
if [ ! -x .venv/bin/ua-admin ] || ! cmp -s pyproject.toml .venv/.pyproject; then
  echo "setup: installing ua-admin"
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  cp pyproject.toml .venv/.pyproject
  rm -rf ./*.egg-info
fi

# The browser test's Node packages (package.json, package-lock.json: JsSIP, esbuild,
# playwright-core, which drives Debian's chromium and downloads no browser), installed
# again when the lock file changes.
stamp=node_modules/.setup-lock
if [ ! -d node_modules ] || ! cmp -s package-lock.json "$stamp"; then
  echo "setup: installing node_modules"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi
