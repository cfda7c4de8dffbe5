# The two commands a user needs: `make run` and `make test`. Both prepare what is missing.
.PHONY: setup run test unit

setup:
	@scripts/setup.sh

run: setup
	.venv/bin/python -m lib.runner

test: setup
	.venv/bin/python -m pytest -q -p no:cacheprovider tests

unit: setup
	.venv/bin/python -m pytest -q -p no:cacheprovider tests -k unit
