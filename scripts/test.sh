#!/usr/bin/env bash
# The README's test command: set up the venv, lint, type-check, run the test suite.
source "$(dirname "$0")/venv.sh"
# the browser test drives Debian's chromium (never a downloaded browser build)
if ! command -v chromium >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# text tracks: Debian's OCR engine and the speech synthesiser the tests make speech with
if ! command -v tesseract >/dev/null 2>&1 || ! command -v espeak-ng >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr espeak-ng >/dev/null
fi
ruff check .
ruff format --check .
mypy model indexer service
pytest -q "$@"
