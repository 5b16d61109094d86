"""The sounds the studio's recipes were encoded from, for "play original" and the match: an
upload's, kept among the studio's last few (`Studio.originals`), and a corpus clip's or a
source's, made again from its id whenever asked ('corpus-ID', 'source-INDEX'), so that a
request for one (a GET any page can make a browser send) keeps nothing and evicts no upload.
`st` is a `server.Studio`.
"""

from __future__ import annotations

import logging
import re

import numpy as np
from fastapi import HTTPException

from drumlayer.data import audio, fullband

log = logging.getLogger(__name__)


def corpus_clip(st, i: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Corpus clip i (404 when there is none): (at 22.05 kHz, at full band or None where
    its file cannot be read again: then band-limited)."""
    if not 0 <= i < len(st.clips):
        raise HTTPException(404, f"no corpus clip {i} (0..{len(st.clips) - 1})")
    x = st.dataset.audio([i])[0]
    try:
        return x, fullband.clip(st.dataset.rows[i], st.sr)
    except audio.AudioError as e:
        log.info("studio: corpus clip %d is heard band-limited: %s", i, e)
        return x, None


def source_clip(st, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Source i (404 when there is none): (at 22.05 kHz, at full band)."""
    if not 0 <= i < st.bundle.k:
        raise HTTPException(404, f"no source {i} (0..{st.bundle.k - 1})")
    return st.bundle.sources[i], np.asarray(st.bundle.full_sources[i])


def original(st, token: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The sound a recipe was encoded from, (at 22.05 kHz, at full band): an upload's from
    the kept ones, a corpus clip's ('corpus-ID') or a source's ('source-INDEX') made again;
    None when there is none."""
    m = re.fullmatch(r"(corpus|source)-(\d{1,9})", token or "")
    if m is None:
        return st.originals.get(token or "")
    try:
        x, heard = (corpus_clip if m[1] == "corpus" else source_clip)(st, int(m[2]))
    except HTTPException:
        return None
    return x, heard if heard is not None else fullband.band_limited(x, st.sr, st.samples)
