"""Drum patterns as Standard MIDI Files, for a DAW's MIDI track: every hit a note on its pad's
General MIDI note (`categories.gm_note`), on the GM drum channel (10), with its velocity, the
tempo and 4/4 in the file. Written and read with mido.

A note lasts a 32nd (shorter where the same pad hits again sooner): drum samplers play one-shots,
so the length only keeps notes of one pad from overlapping. The file ends at the pattern's
length (a bar of a groove), so a DAW loops it at its length.
"""

from __future__ import annotations

import io

import mido

from drumlayer.data.categories import gm_note
from drumlayer.kit import groove as groove_lib

PPQ = 480  # ticks per quarter note
CHANNEL = 9  # General MIDI drums: channel 10, counted from 0
NOTE_TICKS = PPQ // 8  # a 32nd note


def ticks(seconds: float, tempo: float, ppq: int = PPQ) -> int:
    """The tick nearest a time (s) at tempo (BPM)."""
    return int(round(seconds * tempo / 60.0 * ppq))


def pattern_midi(hits: list[tuple[int, str, int]], tempo: float, length: int, name: str,
                 ppq: int = PPQ) -> bytes:
    """A type-0 Standard MIDI File of hits [(tick, pad, velocity 1..127)] at tempo (BPM),
    `length` ticks long."""
    if not 1 <= length or any(not 0 <= t < length for t, _, _ in hits):
        raise ValueError(f"every hit must lie inside the pattern's {length} ticks")
    notes = sorted((t, gm_note(pad), int(min(max(v, 1), 127))) for t, pad, v in hits)
    events = []  # (tick, 0 = off before 1 = on at the same tick, message)
    for i, (t, note, vel) in enumerate(notes):
        following = [u for u, n, _ in notes[i + 1:] if n == note and u > t]
        end = min(t + NOTE_TICKS, following[0] if following else length, length)
        events.append((t, 1, mido.Message("note_on", channel=CHANNEL, note=note, velocity=vel)))
        events.append((max(end, t + 1), 0, mido.Message("note_off", channel=CHANNEL, note=note,
                                                         velocity=0)))
    track = mido.MidiTrack([
        mido.MetaMessage("track_name", name=name, time=0),
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo), time=0),
        mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0)])
    now = 0
    for t, _, msg in sorted(events, key=lambda e: (e[0], e[1], e[2].note)):
        track.append(msg.copy(time=t - now))
        now = t
    track.append(mido.MetaMessage("end_of_track", time=max(length - now, 0)))
    buf = io.BytesIO()
    mido.MidiFile(type=0, ticks_per_beat=ppq, tracks=[track]).save(file=buf)
    return buf.getvalue()


def groove_midi(name: str, tempo: float, pads) -> bytes:
    """A bar of the built-in groove `name` on the pads (those of its parts the kit has) at
    tempo, as a MIDI file: each sixteenth a quarter of a beat."""
    groove_lib.check(name, tempo)
    step = PPQ // 4
    return pattern_midi([(s * step, c, v) for s, c, v in groove_lib.hits(name, list(pads))],
                        tempo, groove_lib.STEPS * step, f"drumlayer {name} {tempo:g} BPM")
