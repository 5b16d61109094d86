#!/usr/bin/env bash
# The package as a person installs it: a wheel built from this checkout, installed into a fresh
# virtual environment outside it, run from another folder (so nothing of the checkout is
# imported): the main job on the repository's smoke configs (one model and a kit), the studio
# serving its page and scripts, `analyze`, `kit.export` and `loops` on those workdirs.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'kill "${studio_pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
"$py" -m pip wheel -q --no-deps --no-build-isolation -w dist "$repo" 2>/dev/null ||
  "$py" -m pip wheel -q --no-deps -w dist "$repo"
wheel="$(ls dist/drumlayer-*.whl)"
# the page must be in the wheel
"$py" -m zipfile -l "$wheel" | grep -q "drumlayer/studio/static/app.js" ||
  { echo "wheel check: $wheel holds no drumlayer/studio/static/app.js"; exit 1; }
"$py" -m venv venv
venv/bin/python -m pip install -q --upgrade pip
venv/bin/python -m pip install -q "$wheel"
run() { echo "wheel check: $*"; "$@"; }
cd "$work"  # not the checkout: the installed package answers
export DRUMLAYER_JAX_CACHE="$work/jax-cache"
run venv/bin/python -c "import drumlayer, os; assert '$repo' not in drumlayer.__file__, drumlayer.__file__"
run venv/bin/python -m drumlayer.main --config="$repo/configs/snare.py:smoke" --workdir=snare >main.log 2>&1 ||
  { tail -n 30 main.log; exit 1; }
# a kit: the tests' generated kits (kick, snare, clap in 20 folders), written with numpy alone
PYTHONPATH="$repo/tests" venv/bin/python -c \
  "import pathlib, kitgen; kitgen.write_kits(pathlib.Path('samples'))"
run venv/bin/python -m drumlayer.main --config="$repo/configs/kit.py:smoke" --workdir=kit \
  --config.data.roots="('$work/samples',)" --config.data.split="(0.7,0.15,0.15)" \
  --config.selection.pool=train+augmented --config.kit.max_targets=30 >kit.log 2>&1 ||
  { tail -n 30 kit.log; exit 1; }
run venv/bin/python -m drumlayer.kit.export --workdir=kit --out=exported --variations=2 \
  --velocity_layers=2 --groove=rock
for f in kit.sfz kit.dspreset kit.adg recipes.json kit.zip groove_rock_100bpm.wav groove_rock_100bpm.mid; do
  test -s "exported/$f" || { echo "wheel check: kit.export wrote no $f"; exit 1; }
done
# the studio: its page and scripts from the installed package
venv/bin/python -m drumlayer.studio --workdir=snare --port=0 --warm_up=false >studio.log 2>&1 &
studio_pid=$!
url=""
for _ in $(seq 120); do
  url="$(grep -o 'http://127.0.0.1:[0-9]*/' studio.log | head -n 1 || true)"
  [ -n "$url" ] && break
  kill -0 "$studio_pid" 2>/dev/null || { cat studio.log; exit 1; }
  sleep 1
done
[ -n "$url" ] || { echo "wheel check: the studio did not start"; cat studio.log; exit 1; }
for path in "" static/app.js static/instrument.js static/loop.js static/style.css api/model; do
  venv/bin/python - "$url$path" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=60) as r:
    body = r.read()
    assert r.status == 200 and body, (sys.argv[1], r.status)
print(f"wheel check: {sys.argv[1]} {r.status} ({len(body)} bytes)")
PY
done
kill "$studio_pid"
# analyze: a folder of the corpus's own clips written as WAVs
venv/bin/python - <<'PY'
import os, numpy as np, soundfile as sf
os.makedirs("mine", exist_ok=True)
clips = np.load("snare/corpus/clips.npy", mmap_mode="r")
for i in range(3):
    sf.write(f"mine/hit{i}.wav", np.asarray(clips[i]), 22050)
PY
run venv/bin/python -m drumlayer.recipes.analyze --workdir=snare --out=recipes mine
test -s recipes/summary.csv && test "$(wc -l < recipes/summary.csv)" -eq 4
# loops: a loop played from the kit corpus's own clips, analysed on the kit
venv/bin/python - <<'PY'
import numpy as np, soundfile as sf
clips = np.load("kit/corpus/clips.npy", mmap_mode="r")
loop = np.zeros(3 * 22050)
for i, t in enumerate((0.0, 0.5, 1.0, 1.5, 2.0, 2.5)):
    a = int(t * 22050)
    loop[a:a + 22050] += np.asarray(clips[i % len(clips)])[: len(loop) - a]
sf.write("loop.wav", loop / np.abs(loop).max() * 0.9, 22050)
PY
run venv/bin/python -m drumlayer.loops --workdir=kit --out=loops loop.wav
for f in summary.csv loop/hits.csv loop/groove.mid loop/rebuilt.wav loop/report.json \
         loop/kit/kit.sfz loop/kit/kit.adg; do
  test -s "loops/$f" || { echo "wheel check: loops wrote no $f"; exit 1; }
done
echo "wheel check: passed"
