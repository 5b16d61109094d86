"""Entry point of the main job.

    python -m drumlayer.main --config=configs/snare.py [--workdir=runs/snare]

Logs the devices, then runs the stages of `drumlayer.pipeline` into the workdir (or, for a
config with a `kit` section such as configs/kit.py, those of every category: `drumlayer.kit.job`).
A config field the run cannot use, missing samples or a non-finite loss end it with one line
saying what to do (exit status 1); anything else keeps its traceback.
"""

from __future__ import annotations

import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from drumlayer import cli, pipeline
from drumlayer.errors import DiskFull, DrumlayerError, disk_full
from drumlayer.kit import job
from drumlayer.training import distributed

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder (default: runs/<config name>)")


def default_workdir(config_path: str) -> str:
    name = os.path.splitext(os.path.basename(config_path.split(":")[0]))[0]
    variant = config_path.split(":", 1)[1] if ":" in config_path else ""
    return os.path.join("runs", name + (f"-{variant}" if variant else ""))


class _QuietLibraries:
    """Keep Orbax's per-save INFO chatter out of the run's log (warnings still show), and its
    tracebacks of a full disk: the job ends with one line that says so."""

    def filter(self, record) -> bool:
        if "orbax" not in record.pathname:
            return True
        if record.levelno < 30:
            return False
        told = [Exception(record.getMessage()), *(record.exc_info or (None, None))[1:2]]
        return all(e is None or disk_full(e, "") is None for e in told)


def main(argv):
    del argv
    logging.get_absl_handler().addFilter(_QuietLibraries())
    cli.compilation_cache()
    joined = distributed.initialize_distributed()
    config = _CONFIG.value
    distributed.use_cpu_cores(int(config.train.batch), int(config.train.get("cpu_devices", 1)))
    workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].config_filename)
    logging.info("JAX %s, process %d of %d, devices: %s", jax.__version__, jax.process_index(),
                 jax.process_count(), jax.devices())
    try:
        (job.run if job.is_kit_config(config) else pipeline.run)(config, workdir)
    except Exception as e:  # noqa: BLE001 - a full disk is one line whatever raised it
        if not isinstance(e, DrumlayerError):
            e = disk_full(e, workdir)
            if e is None:
                raise
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr, flush=True)
        if isinstance(e, DiskFull):  # Orbax's writer threads, failing too, print as they stop
            sys.stderr = open(os.devnull, "w")  # noqa: SIM115
        sys.exit(1)
    finally:
        if joined:
            jax.distributed.shutdown()


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
