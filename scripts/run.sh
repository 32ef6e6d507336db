#!/usr/bin/env bash
# The README's main command: set up the venv and run the main job.
source "$(dirname "$0")/venv.sh"
exec t2v demo "$@"
