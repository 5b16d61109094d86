#!/usr/bin/env bash
# Start the main job as N cooperating processes through jax.distributed.
#
# On one machine (N processes, e.g. to try the multi-host path on CPUs):
#   bash launch/multihost.sh 2 --config=configs/snare.py --workdir=runs/snare-2p
# On several hosts: run this on each host with NUM_PROCESSES, PROCESS_ID and COORDINATOR
# (host:port of process 0) set, and a workdir on a shared file system:
#   COORDINATOR=host0:12355 NUM_PROCESSES=4 PROCESS_ID=$RANK bash launch/multihost.sh - \
#       --config=configs/snare.py --workdir=/shared/runs/snare
# On TPU pods and SLURM clusters jax.distributed finds its peers itself: set
# DRUMLAYER_COORDINATOR=auto and start `python -m drumlayer.main ...` on every host.
set -euo pipefail
n="${1:?usage: multihost.sh N|- [drumlayer.main flags]}"
shift
if [ "$n" = "-" ]; then
  export DRUMLAYER_COORDINATOR="${COORDINATOR:?set COORDINATOR=host:port}"
  export DRUMLAYER_NUM_PROCESSES="${NUM_PROCESSES:?}" DRUMLAYER_PROCESS_ID="${PROCESS_ID:?}"
  exec python -m drumlayer.main "$@"
fi
port="${PORT:-12355}"
export DRUMLAYER_COORDINATOR="127.0.0.1:$port" DRUMLAYER_NUM_PROCESSES="$n"
pids=()
for ((i = 0; i < n; i++)); do
  DRUMLAYER_PROCESS_ID=$i python -m drumlayer.main "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
