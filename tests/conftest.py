import json
import logging
import os
import pathlib
import re
import subprocess
import sys

import pytest

# tests import their helpers (kitgen) as top-level modules
sys.path.insert(0, os.path.dirname(__file__))


def _one_core_per_worker() -> None:
    """Under pytest-xdist with as many workers as cores, each worker (and every process it
    starts) keeps to a core of its own: XLA's CPU thread pools, sized for every core, would
    otherwise spin against the other worker's and make the run slower than one worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if worker.startswith("gw") and count and len(ALL_CORES) <= count:
        os.sched_setaffinity(0, {ALL_CORES[int(worker[2:]) % len(ALL_CORES)]})


def every_core() -> None:
    """preexec_fn of a process that must not share its test worker's one core (a studio under
    load, a load of clients)."""
    if ALL_CORES:
        os.sched_setaffinity(0, ALL_CORES)


ALL_CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
_one_core_per_worker()

# The quick loop (`pytest -m "not slow"`) leaves out every test that needs a trained workdir
# or a browser, and the modules and tests named here (each over ~5 s on 2 cores).
SLOW_FIXTURES = {"smoke_run", "kit_run", "browser"}
SLOW_MODULES = {"test_main", "test_disk_full", "test_docs", "test_pipeline", "test_tune",
                "test_launch", "test_sfizz", "test_fullband"}
SLOW_TESTS = {
    "test_eight_devices_equal_one", "test_two_processes_through_jax_distributed_match_one",
    "test_killed_mid_training_then_resumed_matches_an_uninterrupted_run",
    "test_patience_stops_phase_2_and_a_resumed_run_stops_at_the_same_epoch",
    "test_training_learns", "test_sigterm_mid_epoch_saves_at_the_next_step_and_resumes_there",
    "test_steps_per_call_changes_nothing_but_speed",
    "test_a_checkpoint_of_random_bits_resumes_from_the_one_before",
    "test_a_damaged_latest_checkpoint_resumes_from_the_one_before",
    "test_checkpoints_at_phase_ends_keep_the_same_best_and_latest",
    "test_a_rerun_after_training_ended_keeps_its_summary_and_metrics",
    "test_every_call_runs_the_steps_compiled_ahead",
    "test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_checkpoint",
    "test_profile_writes_a_trace_of_a_training_call",
    "test_the_spectrum_by_linearity_trains_like_the_fft",
    "test_spectrum_loss_equals_the_loss_of_the_spectrum",
    "test_spectrum_gradient_matches_autodiff",
    "test_the_compilation_cache_stays_under_its_size_limit",
    "test_the_compilation_cache_keeps_compiled_programs_unless_off",
    "test_a_second_writer_is_refused_with_the_holder", "test_cli_on_a_workdir_without_a_bundle",
    "test_the_evaluation_and_the_studio_do_not_import_the_corpus_builder"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if (SLOW_FIXTURES & set(item.fixturenames) or module in SLOW_MODULES
                or item.originalname in SLOW_TESTS):
            item.add_marker(pytest.mark.slow)


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


def shared(tmp_path_factory, worker_id: str, name: str, build):
    """build(folder) -> JSON-able result, made once for the whole test run: in this process
    alone, or under pytest-xdist by the first worker that asks, the others waiting on a file
    lock and reading its result (the folder is the same for all)."""
    if worker_id == "master":  # read back as JSON all the same: the same types either way
        return json.loads(json.dumps(build(tmp_path_factory.mktemp(name))))
    from filelock import FileLock

    folder = tmp_path_factory.getbasetemp().parent / name
    done = folder / ".result.json"
    with FileLock(f"{folder}.lock"):
        if not done.exists():
            folder.mkdir(exist_ok=True)
            result = build(folder)
            done.write_text(json.dumps(result))
    return json.loads(done.read_text())


@pytest.fixture(scope="session", autouse=True)
def compilation_cache():
    """The tests' own JAX programs kept on disk as the commands keep theirs (`cli.compilation_
    cache`: $DRUMLAYER_JAX_CACHE, else the user's cache folder): the many tests that build the
    same small model or refinement compile it once, and a second run of the suite compiles
    little. Tests of the cache itself give their commands a folder of their own."""
    from drumlayer import cli

    return cli.compilation_cache()


@pytest.fixture(scope="session")
def worker_id(request):
    """pytest-xdist's worker name ('gw0', ...), or 'master' without it (xdist defines its own
    fixture of this name where it is installed; this one serves a run without it)."""
    return getattr(request.config, "workerinput", {}).get("workerid", "master")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, worker_id):
    """One `configs/snare.py:smoke` main job (corpus ... evaluation), run by `pipeline.run`,
    shared by the tests that read a trained workdir (once for the whole run, `shared`): its
    workdir. Tests read it; one that writes into a workdir copies it first."""
    from drumlayer import configs, pipeline

    def build(folder):
        pipeline.run(configs.load(os.path.join(ROOT, "configs", "snare.py:smoke")),
                     str(folder / "run"))
        return str(folder / "run")

    return pathlib.Path(shared(tmp_path_factory, worker_id, "smoke", build))


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="session")
def kit_run(tmp_path_factory, worker_id):
    """A kit job on 20 generated kits (44.1 kHz files), sources chosen among the training clips
    and their variants, once for the whole run (`shared`): (config, workdir, summary, its log
    lines)."""
    from drumlayer import configs
    from drumlayer.kit import job
    from drumlayer.loops import analyze
    from drumlayer.workdir import Workdir

    from kitgen import write_kits

    def configured(folder):
        config = configs.load(os.path.join(ROOT, "configs", "kit.py:smoke"))
        with config.unlocked():
            config.data.roots = (str(folder / "samples"),)
            config.data.split = (0.7, 0.15, 0.15)  # 3 test kits: each category is evaluated
            config.data.holdout = ("kit18", "kit19")  # out of library: 2 clips of each category
            config.selection.pool = "train+augmented"  # variants become sources (full band)
            config.kit.max_targets = 30  # 14 training clips x (1 + 2 variants) is over: 1
        return config

    def build(folder):
        write_kits(folder / "samples")
        lines, logger = _Lines(), logging.getLogger("drumlayer")
        level = logger.level
        logger.addHandler(lines)
        logger.setLevel(logging.INFO)
        try:
            summary = job.run(configured(folder), str(folder / "run"))
        finally:
            logger.removeHandler(lines)
            logger.setLevel(level)
        # the loops' categoriser, small (the tests' loops are few drums): what the studio and
        # the command read back instead of training the full one
        analyze.categoriser(Workdir(folder / "run"), mixtures=3000, steps=1500)
        return {"folder": str(folder), "summary": summary, "lines": "\n".join(lines.lines)}

    r = shared(tmp_path_factory, worker_id, "kit", build)
    folder = pathlib.Path(r["folder"])
    return configured(folder), Workdir(folder / "run"), r["summary"], r["lines"]


def serve(wd, *flags):
    """`python -m drumlayer.studio` on wd, any free port, with more flags: (process, its
    address)."""
    proc = subprocess.Popen([sys.executable, "-m", "drumlayer.studio", f"--workdir={wd}",
                             "--port=0", *flags], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=every_core)
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
