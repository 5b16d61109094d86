"""A studio recipe: a point of the latent space and the edits on top of its weights (the JSON the
page saves and loads, the API takes, and `python -m drumlayer.recipes.analyze` writes)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_LATENT = 1024
MAX_SOURCES = 4096
GAIN_DB = (-60.0, 24.0)
NAME_MAX = 300


def printable(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept by Python as surrogate escapes,
    which JSON cannot hold) shown as backslash escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def display_name(name: str) -> str:
    """A corpus name ('kit / instrument', the kit a folder's path below its root) as a person
    knows it: a folder path of more than two parts keeps its first (the library or package)
    and its last (the kit), 'lmms-common/usr/share/lmms/samples/drums / snare03' ->
    'lmms-common … drums / snare03'; kit and instrument names are kept as they are."""
    parts = []
    for part in name.split(" / "):
        folders = [f for f in part.split("/") if f]
        parts.append(f"{folders[0]} … {folders[-1]}" if len(folders) > 2 else part)
    return printable(" / ".join(parts))


def shorten(name: str, most: int = NAME_MAX) -> str:
    """name in at most `most` characters: its start and its end, which tell apart files that
    differ only there (a kit's velocity layers), joined by '...'."""
    if len(name) <= most:
        return name
    head = most // 3
    return name[:head] + "..." + name[len(name) - (most - head - 3):]


class Envelope(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")
    attack: float = Field(0.0, ge=0.0, le=1.0, description="seconds of linear rise")
    hold: float = Field(1.0, ge=0.0, le=1.0, description="seconds at full level")
    decay: float = Field(1.0, ge=0.005, le=10.0, description="seconds to fall by 60 dB")


PITCH_CENTS = 1200.0  # a layer's pitch is within +- an octave
CUTOFF_HZ = (20.0, 20000.0)


class LayerShape(BaseModel):
    """How one layer is shaped (recipes.shaping): the defaults leave it as its source is."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")
    pitch_cents: float = Field(0.0, ge=-PITCH_CENTS, le=PITCH_CENTS,
                               description="playback pitch in cents (SFZ transpose and tune)")
    filter: Literal["lpf", "hpf"] | None = Field(
        None, description="2-pole low- or high-pass (SFZ fil_type lpf_2p / hpf_2p), or none")
    cutoff_hz: float = Field(1000.0, ge=CUTOFF_HZ[0], le=CUTOFF_HZ[1],
                             description="the filter's cutoff (SFZ cutoff)")
    decay: float | None = Field(None, ge=0.01, le=10.0,
                                description="seconds to fall by 60 dB from the layer's start "
                                            "(SFZ ampeg_decay), or none")


class Recipe(BaseModel):
    """A layered sound: a point of the latent space and the edits on top of its weights.
    `weights`, `pca` and `name` are filled in by the server and ignored on input."""

    model_config = ConfigDict(allow_inf_nan=False, extra="ignore")
    version: Literal[1, 2] = Field(2, description="1: no shaping; 2: `shaping` (read both)")
    latent: list[Annotated[float, Field(ge=-1e4, le=1e4)]] = Field(
        ..., max_length=MAX_LATENT, description="z [latent]")
    locks: dict[int, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=dict, description="layer -> weight fixed by hand")
    muted: list[int] = Field(default_factory=list, max_length=MAX_SOURCES)
    solo: list[int] = Field(default_factory=list, max_length=MAX_SOURCES)
    prune: float = Field(0.0, ge=0.0, le=1.0, description="weights below it are removed")
    offsets_ms: dict[int, Annotated[float, Field(ge=0.0, le=500.0)]] = Field(
        default_factory=dict, description="layer -> start offset in ms")
    shaping: dict[int, LayerShape] = Field(
        default_factory=dict, description="layer -> its pitch, filter and decay")
    envelope: Envelope = Field(default_factory=Envelope)
    gain_db: float = Field(0.0, ge=GAIN_DB[0], le=GAIN_DB[1])
    residual: list[Annotated[float, Field(ge=-1.0, le=1.0)]] | None = Field(
        None, max_length=MAX_SOURCES,
        description="[k] added to the decoded weights before the edits (the sums clipped to "
                    "[0, 1]): what a refined recipe's weights differ from its latent's")
    weights: list[float] | None = Field(None, description="(output) the weights mixed [k]")
    pca: list[float] | None = Field(None, description="(output) PCA coordinates of latent")
    name: str | None = Field(None, max_length=NAME_MAX,
                             description="(output) where it came from")
    original: str | None = Field(None, max_length=64,
                                 description="(output) token of the original audio")
