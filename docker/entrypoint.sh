#!/usr/bin/env bash
# Container entrypoint (also run by the tests outside Docker, on the CPU path).
#   serve [flags]        run the search service (default)
#   index add PATH...    bulk-index a mounted folder into the same store, offline
#   anything else        run as a command
# T2V_PRELOAD=1 (default) first puts the configured weights into the cache (a no-op when cached),
# so a container started offline afterwards finds them.
set -euo pipefail

if [ "${T2V_PRELOAD:-1}" = "1" ]; then
    t2v preload
fi

cmd="${1:-serve}"
if [ "$#" -gt 0 ]; then shift; fi
case "$cmd" in
    serve) exec t2v serve "$@" ;;
    index) exec t2v index "$@" ;;
    *) exec "$cmd" "$@" ;;
esac
