"""The README and docs/ say only what is there: every relative link, every repository path and
every `python -m` module they name exists, and the README's own-folder command trains."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, real_kits

ROOT_PATH = pathlib.Path(ROOT)
PAGES = sorted([ROOT_PATH / "README.md", ROOT_PATH / "notebooks" / "README.md",
                *(ROOT_PATH / "docs").glob("*.md")])
TOP = ("drumlayer", "configs", "launch", "tests", "notebooks", "benchmarks", "docs", ".ci")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_TOPS = "|".join(re.escape(t) for t in TOP)
PATH = re.compile(rf"(?<![\w/.<-])((?:{_TOPS})/[\w./-]*[\w/])")
MODULE = re.compile(r"python3? -m ([\w.]+)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def anchors(page: pathlib.Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", page.read_text(), re.M)}


def ids(pages):
    return [str(p.relative_to(ROOT_PATH)) for p in pages]


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_relative_links_lead_somewhere(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_repository_paths_exist(page):
    missing = [p for p in PATH.findall(page.read_text())
               if not (ROOT_PATH / p).exists() and not any(c in p for c in "*<>")]
    assert not missing, f"{page.name} names paths that are not in the repository: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_python_m_modules_exist(page):
    missing = []
    for module in set(MODULE.findall(page.read_text())):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(module)
    assert not missing, f"{page.name}: `python -m` of modules that do not exist: {missing}"


def test_the_checks_fail_on_what_they_guard(tmp_path):
    """A broken link, a path and a module that are not there are found (the tests above are
    not vacuous)."""
    page = tmp_path / "page.md"
    page.write_text("[x](nowhere.md) [y](#no-such-heading) `drumlayer/nowhere.py` "
                    "`python -m drumlayer.nowhere`\n# A heading\n")
    assert LINK.findall(page.read_text()) == ["nowhere.md", "#no-such-heading"]
    assert "no-such-heading" not in anchors(page) and "a-heading" in anchors(page)
    assert PATH.findall(page.read_text()) == ["drumlayer/nowhere.py"]
    assert importlib.util.find_spec("drumlayer.recipes.analyze") is not None
    with pytest.raises(ModuleNotFoundError):
        importlib.util.find_spec("drumlayer.nowhere.x")
    assert importlib.util.find_spec("drumlayer.nowhere") is None


def readme_command(marker: str) -> list[str]:
    """The README's first `python -m drumlayer.main` command line that contains marker."""
    for block in re.findall(r"```bash\n(.*?)```", (ROOT_PATH / "README.md").read_text(), re.S):
        for line in block.splitlines():
            if line.startswith("python -m drumlayer.main") and marker in line:
                return shlex.split(line)
    raise AssertionError(f"the README shows no main job with {marker!r}")


def test_the_readme_trains_on_a_folder_of_your_own(tmp_path):
    """The README's 'several folders' command, as written, on two folders of real recordings
    (two Hydrogen kits): only the config is its :smoke variant, the folders ours."""
    kits = sorted(pathlib.Path(real_kits()).iterdir())[:2]
    folders = []
    for i, kit in enumerate(kits):  # plain folders of audio files, as a producer keeps them
        folder = tmp_path / f"samples{i}"
        folder.mkdir()
        for f in kit.iterdir():
            if f.suffix.lower() in (".wav", ".flac", ".aif", ".aiff"):
                shutil.copy(f, folder / f.name)
        folders.append(str(folder))
    cmd = readme_command("data.category=all")
    args = []
    for a in cmd[3:]:
        if a.startswith("--config="):
            a += ":smoke"
        elif a.startswith("--config.data.roots="):
            a = "--config.data.roots=" + ",".join(f"'{f}'" for f in folders)
        elif a.startswith("--workdir="):
            a = f"--workdir={tmp_path / 'run'}"
        args.append(a)
    assert args[0] == "--config=configs/snare.py:smoke" and len(args) == 4, args
    r = subprocess.run([sys.executable, "-m", "drumlayer.main", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=900,
                       env={**os.environ, "DRUMLAYER_KITS": str(tmp_path / "none")})
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = (tmp_path / "run" / "corpus" / "manifest.csv").read_text()
    assert all(f in manifest for f in folders) and "procedural" not in manifest
    assert (tmp_path / "run" / "eval" / "report.md").exists()
    assert (tmp_path / "run" / "run.json").exists()
    # too few kits to split by kit: it splits by near-duplicate group
    meta = json.loads((tmp_path / "run" / "corpus" / "corpus.json").read_text())
    assert not meta["procedural"] and meta["clips"] >= 50
    assert meta["split"]["val"] >= 2 and meta["split"]["test"] >= 2
    s = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert s["test_clips"] == meta["split"]["test"] and s["sources"] == 8
