"""Find one-shots in folders and drum-kit files, and name what each one is.

This module reads directory trees and kit descriptions (Hydrogen `drumkit.xml`, SFZ, SF2) and
returns `Candidate`s: where the audio is, which kit and instrument it belongs to, its category
(snare, kick, closed-hat, open-hat, tom, clap, rim, cymbal, other) and licence. It decodes no
audio: that is `drumlayer.data.audio` (files) and `candidates.load_candidate` (which also reads
SF2 sample data).

Classification trusts, in order: the kit's instrument or sample name, then a General MIDI drum key
where the kit format maps keys (SF2 percussion banks, SFZ kits), then file and folder names. Rolls,
snares-off hits, side-sticks, rim clicks, rimshots and claps are never snares. Hats are open
(also half-open, let ring; GM key 46) or closed (also pedal, foot, choked; GM 42 and 44); a hat
that says neither takes its key's, else closed.
"""

from __future__ import annotations

import functools
import os
import re
import struct
import xml.etree.ElementTree as ET

from drumlayer.data.candidates import Candidate
from drumlayer.data.categories import classify
from drumlayer.data.kit_formats import parse_hydrogen, parse_sf2, parse_sfz

AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .aif .aiff .aifc .flac .ogg .oga .opus .mp3 .w64 .rf64 .caf .au .snd".split()
)
KIT_FILES = frozenset((".sfz", ".sf2"))  # and Hydrogen's drumkit.xml
SKIPPED = "skipped: "  # how a file that is neither audio nor a kit starts its reason
_CONVERT = "convert it to WAV, FLAC or AIFF"

# Formats drum sounds come in that drumlayer does not read, and what to do with them.
UNREAD_FORMATS = {
    ".pat": f"a GUS patch, which drumlayer does not read: {_CONVERT}",
    ".raw": "headerless audio: its sample rate and encoding are unknown; convert it to WAV "
            "stating them (e.g. sox -t raw -r 44100 -e signed -b 16 -c 1 in.raw out.wav)",
    ".sf3": "a compressed SF3 soundfont, which drumlayer does not read: convert it to SF2",
    ".gig": f"a GigaSampler instrument, which drumlayer does not read: {_CONVERT}",
    ".nki": f"a Kontakt instrument, which drumlayer does not read: {_CONVERT}",
    ".exs": f"an EXS24 instrument, which drumlayer does not read: {_CONVERT}",
}
UNREAD_FORMATS[".pcm"] = UNREAD_FORMATS[".raw"]


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def walk_files(roots: list[str], exclude: tuple[str, ...] = ()) -> tuple[
        list[str], list[tuple[str, str]]]:
    """All files under roots (symlinks followed, loops cut), except those under the folders
    `exclude` (by any name: a command's own output folder inside its input) -> (files,
    problems).

    problems: (path, reason) for directories that could not be listed or that loop back.
    """
    files, problems = [], []
    seen = {i for i in map(_identity, exclude) if i is not None}
    for root in roots:
        root = os.path.abspath(os.path.expanduser(root))
        if os.path.isfile(root):
            files.append(root)
            continue
        if not os.path.isdir(root):
            problems.append((root, "root does not exist or is not a directory"))
            continue
        stack = [root]
        while stack:
            d = stack.pop()
            try:
                st = os.stat(d)
            except OSError as e:
                problems.append((d, f"cannot open directory: {e.strerror}"))
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in seen:
                continue  # a symlink loop, or a folder reached twice: read it once
            seen.add(ident)
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except OSError as e:
                problems.append((d, f"cannot list directory: {e.strerror}"))
                continue
            subdirs = []
            for e in entries:
                try:
                    is_dir = e.is_dir(follow_symlinks=True)
                    fst = None if is_dir else e.stat(follow_symlinks=True)
                except OSError:
                    is_dir, fst = False, None  # broken link or loop: decoding will say which
                if is_dir:
                    subdirs.append(e.path)
                elif fst is None or (fst.st_dev, fst.st_ino, "f") not in seen:
                    if fst is not None:
                        seen.add((fst.st_dev, fst.st_ino, "f"))  # a file linked twice is read once
                    files.append(e.path)
            stack.extend(reversed(subdirs))
    return files, problems


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower()


_LICENCE = re.compile(r"(licen[cs]e|copying)", re.I)


@functools.lru_cache(maxsize=4096)
def _licence_near(folder: str, stop: str) -> str:
    """First line of a LICENSE/COPYING file in `folder` or an ancestor up to `stop`."""
    d = folder
    stop = os.path.abspath(stop)
    while True:
        try:
            names = os.listdir(d)
        except OSError:
            names = []
        for n in sorted(names):
            if _LICENCE.match(n):
                try:
                    with open(os.path.join(d, n), encoding="utf-8", errors="replace") as f:
                        for line in f:
                            if line.strip():
                                return line.strip()[:200]
                except OSError:
                    pass
        if os.path.abspath(d) in (stop, os.path.dirname(d)) or len(d) <= len(stop):
            return ""
        d = os.path.dirname(d)



def discover(roots: list[str], exclude: tuple[str, ...] = ()) -> tuple[
        list[Candidate], list[tuple[str, str]]]:
    """Walk roots (not the folders `exclude`) -> (candidates, rejected [(path, reason)]).

    Files a kit description references belong to that kit; every other audio file is a loose
    one-shot whose kit is its folder. Kit files that cannot be parsed are rejected, not fatal;
    every other file is rejected with a reason that starts with SKIPPED (what it is, and for
    formats drum sounds come in, what to do).
    """
    files, rejected = walk_files(roots, exclude)
    candidates: list[Candidate] = []
    claimed: set[str] = set()
    root_of = {}
    for r in roots:
        r = os.path.abspath(os.path.expanduser(r))
        root_of[r] = r
    for path in files:
        ext, base = _ext(path), os.path.basename(path)
        parser = (parse_hydrogen if base == "drumkit.xml" else parse_sfz if ext == ".sfz"
                  else parse_sf2 if ext == ".sf2" else None)
        if parser is None:
            continue
        try:
            found = parser(path)
        except (OSError, ValueError, ET.ParseError, KeyError, IndexError, struct.error) as e:
            rejected.append((path, f"unreadable kit description: {e}"))
            continue
        for c in found:
            claimed.add(os.path.normpath(c.file))
        candidates.extend(found)
    for path in files:
        ext, base = _ext(path), os.path.basename(path)
        if (os.path.normpath(path) in claimed or ext in KIT_FILES or base == "drumkit.xml"
                or _LICENCE.match(base)):  # licences are read for the clips' licence column
            continue
        if ext not in AUDIO_EXTENSIONS:
            rejected.append((path, SKIPPED + UNREAD_FORMATS.get(
                ext, f"not audio or a kit description ({ext or 'no extension'})")))
            continue
        root = next((r for r in root_of if path.startswith(r + os.sep)), os.path.dirname(path))
        folder = os.path.dirname(path)
        rel = os.path.relpath(folder, root) if folder != root else os.path.basename(root)
        stem = os.path.splitext(os.path.basename(path))[0]
        candidates.append(Candidate(
            file=path, kit=rel, instrument=stem,
            category=classify(stem, *reversed(rel.split(os.sep))),
            source_format="folder", licence=_licence_near(folder, root),
        ))
    return candidates, rejected
