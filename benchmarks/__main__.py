"""The project's benchmarks: drumlayer against a reference measured in the same process.

    python -m benchmarks [corpus] [features] [selection] [train] [evaluate] [studio] [analyze]
        [kit_studio] [first_upload] [studio_load] [loops] [generation]
        [--out=bench_results] [--workdir=runs/snare_paper]

Run from the repository root with the dev extra installed (librosa, Playwright; the studio
benchmark also needs Chromium). Each benchmark prints a table and writes JSON (machine, medians,
ratios) to --out. Timings are medians over repeats after a warm-up; these machines are shared
and noisy, so compare ratios against the reference of the same run rather than absolute numbers
across runs.
"""

from __future__ import annotations

import json
import os
import sys
import time

from benchmarks import (  # noqa: F401 (each module registers its benchmarks)
    analyze_benchmark,
    corpus_benchmark,
    evaluate_benchmark,
    features_benchmark,
    generation_benchmark,
    harness,
    loops_benchmark,
    selection_benchmark,
    studio_benchmark,
    train_benchmark,
)
from drumlayer import cli


def _define_flags(fv) -> None:
    from absl import flags

    flags.DEFINE_integer("files", 20000, "generated folder size (corpus)", flag_values=fv)
    flags.DEFINE_integer("batch", 2048, "clips per batch (features)", flag_values=fv)
    flags.DEFINE_integer("select_n", 100000, "large n (selection)", flag_values=fv)
    flags.DEFINE_string("out", "bench_results", "folder for the JSON results", flag_values=fv)
    flags.DEFINE_string("workdir", "runs/snare_paper",
                        "a trained workdir (evaluate; studio; analyze)", flag_values=fv)
    flags.DEFINE_integer("moves", 300, "slider input events (studio)", flag_values=fv)
    flags.DEFINE_integer("repeats", 3, "studio starts of each kind (first_upload)",
                         flag_values=fv)
    flags.DEFINE_string("kit_workdir", "runs/kit",
                        "a trained kit workdir (kit_studio, loops, generation)", flag_values=fv)
    flags.DEFINE_integer("rebuild_loops", 8, "loops rebuilt against the baselines (loops)",
                         lower_bound=0, flag_values=fv)


def _command(args, names: list[str]) -> int:
    names = names or sorted(harness.BENCHMARKS)
    unknown = set(names) - set(harness.BENCHMARKS)
    if unknown:
        print(f"unknown benchmark(s) {sorted(unknown)}; choose from "
              f"{sorted(harness.BENCHMARKS)}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    cli.compilation_cache()  # as the main job does: a rerun's programs load instead of compiling
    for name in names:
        print(f"== {name}")
        result = {"benchmark": name, "machine": harness.machine(),
                  **harness.BENCHMARKS[name](args),
                  "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                  "command": " ".join(["python -m benchmarks", *sys.argv[1:]])}
        path = os.path.join(args.out, f"{name}.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
        print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(_command, None, "python -m benchmarks", __doc__, _define_flags,
                     positional=True))
