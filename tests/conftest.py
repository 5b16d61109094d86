import logging
import os
import re
import subprocess
import sys

import pytest

# tests import their helpers (kitgen) as top-level modules
sys.path.insert(0, os.path.dirname(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL = "http://127.0.0.1:8765"  # TestClient's base_url: a studio answers to its own hosts only


def real_kits() -> str:
    """A folder of real Hydrogen drum kits: $DRUMLAYER_TEST_KITS (.ci/run fetches Debian's
    hydrogen-data there), or the open kits installed or fetched on this machine. Skips the
    test where there are none, but under CI=true fails: CI must not go green by skipping."""
    from drumlayer.data import corpus as corpus_lib

    for d in (os.environ.get("DRUMLAYER_TEST_KITS", ""), "/usr/share/hydrogen/data/drumkits",
              os.path.join(corpus_lib.FETCH_DIR, "usr/share/hydrogen/data/drumkits")):
        if d and os.path.isdir(d):
            return d
    if os.environ.get("CI") == "true":
        pytest.fail("CI: no real drum kits (set DRUMLAYER_TEST_KITS; .ci/run fetches them)")
    pytest.skip("no real drum kits here: run launch/fetch_open_kits.sh or set "
                "DRUMLAYER_TEST_KITS")


def run_main(workdir, *extra, env=None):
    cmd = [sys.executable, "-m", "drumlayer.main", "--config=configs/snare.py:smoke",
           f"--workdir={workdir}", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env=None if env is None else {**os.environ, **env})


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One `configs/snare.py:smoke` main job (corpus ... evaluation), run in this process by
    `pipeline.run`, shared by the tests that read a trained workdir: its workdir."""
    from drumlayer import configs, pipeline

    wd = tmp_path_factory.mktemp("smoke") / "run"
    pipeline.run(configs.load(os.path.join(ROOT, "configs", "snare.py:smoke")), str(wd))
    return wd


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="session")
def kit_run(tmp_path_factory):
    """A kit job on 20 generated kits (44.1 kHz files), sources chosen among the training clips
    and their variants: (config, workdir, summary, its log lines)."""
    tmp_path = tmp_path_factory.mktemp("kit")
    from drumlayer import configs
    from drumlayer.kit import job
    from drumlayer.workdir import Workdir

    from kitgen import write_kits

    write_kits(tmp_path / "samples")
    config = configs.load(os.path.join(ROOT, "configs", "kit.py:smoke"))
    with config.unlocked():
        config.data.roots = (str(tmp_path / "samples"),)
        config.data.split = (0.7, 0.15, 0.15)  # 3 test kits: each category is evaluated
        config.data.holdout = ("kit18", "kit19")  # out of library: 2 clips of each category
        config.selection.pool = "train+augmented"  # variants become sources (full band)
        config.kit.max_targets = 30  # 14 training clips x (1 + 2 variants) is over: 1 variant
    wd = Workdir(tmp_path / "run")
    lines, logger = _Lines(), logging.getLogger("drumlayer")
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        summary = job.run(config, wd.root)
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    return config, wd, summary, "\n".join(lines.lines)


def serve(wd, *flags):
    """`python -m drumlayer.studio` on wd, any free port, with more flags: (process, its
    address)."""
    proc = subprocess.Popen([sys.executable, "-m", "drumlayer.studio", f"--workdir={wd}",
                             "--port=0", *flags], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = None
    for line in proc.stdout:  # the CLI says where it listens
        m = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
        if m:
            url = m.group(1)
            break
    assert url, "the studio did not say where it listens"
    return proc, url


def server_errors(app, examples: int = 25) -> list:
    """Fuzz every operation of the app's OpenAPI schema (schemathesis; calls it as
    http://testserver): [(operation, status, body)] of the answers that were server errors."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = []

    def fuzz(operation):
        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case):
            # the first request that refines waits for the refinement to compile: seconds,
            # more while other jobs share the cores (schemathesis gives up after 10 s)
            resp = case.call(timeout=120)
            if resp.status_code >= 500:
                failures.append((operation.label, resp.status_code, resp.text[:200]))

        run()

    for op in schema.get_all_operations():
        fuzz(op.ok())
    return failures
