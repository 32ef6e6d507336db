#!/usr/bin/env bash
# The README's test command: set up the venv, lint, type-check, run the test suite.
source "$(dirname "$0")/venv.sh"
ruff check .
ruff format --check .
mypy model indexer service
pytest -q "$@"
