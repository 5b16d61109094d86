#!/usr/bin/env bash
# Train and evaluate configs/snare.py and each of its ablations (configs/ablations/*.py), then
# write the comparison table: runs/ablations/ablations.md (and .json).
#
#   bash launch/ablations.sh [RUNS_DIR]        # default runs/ablations; ~15 min per run on 2 CPUs
#
# Every run is resumable: rerunning skips finished stages and continues interrupted training.
set -euo pipefail
runs="${1:-runs/ablations}"
mkdir -p "$runs"
configs=(configs/snare.py configs/ablations/*.py)
for cfg in "${configs[@]}"; do
  name="$(basename "$cfg" .py)"
  [ "$name" = snare ] && name=baseline
  if [ ! -d "$runs/$name/corpus" ] && [ -d "$runs/baseline/corpus" ]; then
    # The same corpus for every run: copy it (and the features) rather than rebuild them.
    mkdir -p "$runs/$name"
    cp -r "$runs/baseline/corpus" "$runs/baseline/features" "$runs/$name/"
  fi
  echo "== $name: $cfg -> $runs/$name"
  python -m drumlayer.main --config="$cfg" --workdir="$runs/$name"
done
python -m drumlayer.evaluation.evaluate --compare --out="$runs/ablations" "$runs"/*/
