# The two commands a user needs: `make run` and `make test`. Both prepare what is missing.
.PHONY: setup run test unit bench soak overload image

setup:
	@scripts/setup.sh

run: setup
	.venv/bin/python -m lib.tools.runner

test: setup
	.venv/bin/python -m pytest -q -p no:cacheprovider tests

# The tests that need no Kamailio: tests/unit (no process) and tests/redis (a real Redis).
unit: setup
	.venv/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/redis

# This proxy against a native Kamailio, a db_redis one and the native routing in Python
# (KEMI), side by side (bench/run.py);
# BENCH_QUICK=1 for a short run. Writes bench/results.json and prints the table;
# BENCH_ROWS=metrics,api_auth (media, metrics, import, api_auth) runs only those rows.
bench: setup
	.venv/bin/python -m bench.run

# Not part of `make test`: SOAK_SECONDS (600) at SOAK_CALL_RATE, see bench/soak.py.
soak: setup
	.venv/bin/python -m bench.soak

# Not part of `make test`: past the sustainable call rate, U against N (bench/overload.py);
# about 25 minutes; run it alone on the machine.
overload: setup
	.venv/bin/python -m bench.overload

# The proxy's image (docker/Dockerfile) as UA_IMAGE (ua-proxy:latest): docker when an engine
# answers, else podman, building its Debian base with debootstrap when no registry serves it.
image: setup
	scripts/image.sh
