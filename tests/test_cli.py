"""cli: every command parses absl flags of its own; expected errors are one line, bugs keep
their traceback."""

import pytest

from drumlayer import cli
from drumlayer.data import corpus as corpus_lib
from drumlayer.errors import ConfigError
from drumlayer.evaluation import evaluate as evaluate_lib


def define(fv):
    from absl import flags

    flags.DEFINE_integer("n", 1, "a number", flag_values=fv)


def test_flags_help_and_bad_flags(capsys):
    got = []
    assert cli.run(lambda f, rest: got.append((f.n, rest)) or 0, ["--n=3"], "prog", "doc",
                   define) == 0
    assert got == [(3, [])]
    assert cli.run(lambda f, rest: 0, ["--help"], "prog", "Does things.", define) == 0
    out = capsys.readouterr().out
    assert "Does things." in out and "--n" in out
    assert cli.run(lambda f, rest: 0, ["--m=1"], "prog", "doc", define) == 2
    assert cli.run(lambda f, rest: 0, ["extra"], "prog", "doc", define) == 2
    assert "unexpected arguments" in capsys.readouterr().err


def test_an_expected_error_is_one_line_and_a_bug_keeps_its_traceback(capsys):
    def bad_config(f, rest):
        raise ConfigError("model.normaliser = 'x': must be one of ...")

    assert cli.run(bad_config, [], "prog", "doc", define) == 1
    assert capsys.readouterr().err.strip() == "error: model.normaliser = 'x': must be one of ..."

    def bug(f, rest):
        raise IndexError("a shape bug")

    with pytest.raises(IndexError, match="a shape bug"):
        cli.run(bug, [], "prog", "doc", define)


def test_commands_run_when_imported(tmp_path, capsys):
    """corpus.main and evaluate.main work from another program (flags are theirs alone)."""
    out = tmp_path / "c"
    assert corpus_lib.main([f"--roots={tmp_path / 'nothing'}", f"--out={out}", "--quiet"]) == 1
    assert "no usable snare clips" in capsys.readouterr().err
    assert evaluate_lib.main([f"--workdir={tmp_path}"]) == 1
    assert "run the main job" in capsys.readouterr().err
    assert evaluate_lib.main(["--compare"]) == 1


@pytest.mark.parametrize("megabytes", ["0.02", "lots", "-1", "inf"])
def test_the_compilation_cache_stays_under_its_size_limit(tmp_path, megabytes):
    """The least recently used programs go first; a limit that is no number is the default."""
    import os
    import subprocess
    import sys

    cache = tmp_path / "cache"
    program = ("import jax, jax.numpy as jnp\nfrom drumlayer import cli\ncli.compilation_cache()\n"
               "print(jax.config.jax_compilation_cache_max_size)\n"
               "for n in range(1, 13):\n"
               "    jax.jit(lambda x: jnp.fft.rfft(x) * n)(jnp.ones(64 * n)).block_until_ready()\n")
    env = {**os.environ, "DRUMLAYER_JAX_CACHE": str(cache), "DRUMLAYER_JAX_CACHE_MB": megabytes}
    r = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    programs = [f for f in cache.iterdir() if f.name.endswith("-cache")]
    kept = sum(f.stat().st_size for f in programs)
    assert (cache / ".lockfile").exists()  # jobs at once read and write under it
    if megabytes != "0.02":
        assert int(r.stdout) == 2048 * 2**20 and "not a positive number of" in r.stderr
        assert len(programs) >= 12  # ~3 KB each: all kept
    else:
        assert int(r.stdout) == 20971  # 0.02 * 2**20 bytes
        assert 0 < kept <= 20971 and len(programs) < 12


@pytest.mark.parametrize("setting", ["folder", "off"])
def test_the_compilation_cache_keeps_compiled_programs_unless_off(tmp_path, setting):
    import os
    import subprocess
    import sys

    cache = tmp_path / "cache"
    program = ("import jax, jax.numpy as jnp\nfrom drumlayer import cli\n"
               "print(cli.compilation_cache())\n"
               "jax.jit(lambda x: jnp.fft.rfft(x) * 2)(jnp.ones(64)).block_until_ready()\n")
    # a program that compiles in well under JAX's default 1 s threshold is kept too
    env = {**os.environ, "DRUMLAYER_JAX_CACHE": str(cache) if setting == "folder" else "off"}
    r = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    if setting == "folder":
        assert r.stdout.strip() == str(cache) and any(cache.iterdir())
    else:
        assert r.stdout.strip() == "None" and not cache.exists()
