#!/bin/sh
# Container entrypoint of every storycue image: prepare the Prometheus multiprocess folder,
# then run the given command (tini is PID 1 and forwards signals to it).
#
# prometheus-client's multiprocess mode keeps one file per process in
# PROMETHEUS_MULTIPROC_DIR; files left by a previous run of this container (a restart keeps
# its emptyDir volume) would be summed into the new counters, so the folder is emptied here,
# before any storycue process exists.
set -eu

if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    mkdir -p "${PROMETHEUS_MULTIPROC_DIR}"
    find "${PROMETHEUS_MULTIPROC_DIR}" -mindepth 1 -maxdepth 1 -name '*.db' -delete
fi

exec "$@"
