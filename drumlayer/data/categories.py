"""What instrument a sound is, from its names or its General MIDI key: the category list and
the GM drum map, in one place.
"""

from __future__ import annotations

import re

from drumlayer.errors import DrumlayerError

CATEGORIES = ("snare", "kick", "closed-hat", "open-hat", "tom", "clap", "rim", "cymbal", "other")
_HAT = r"(hi ?hat|high ?hat|\bhh|\bhat|\bhi ?h\b)"

# (category, pattern) tried in order on a normalised name; the first match wins. Exclusions come
# first so that "snare roll", "snares off" and "snare side stick" never count as snares.
_NAME_RULES: tuple[tuple[str, re.Pattern], ...] = tuple(
    (cat, re.compile(pat))
    for cat, pat in (
        ("other", r"\brolls?\b|\broll\d|\bflam|\bbuzz|\bswirl|\bswish"),
        ("other", r"snares? ?off|no ?snares?|snare ?less|\bsnoff|cowbell|tambourine|\btamb\b"),
        ("other", r"\bwaves?\b|ocean|noise|\bzap|laser|scratch|\bs?fx\b|whistle"),
        ("clap", r"clap|\bsnaps?\b|\bsnap\d|finger ?snap"),
        ("rim", r"side ?stick|cross ?stick|x ?stick|\bsticks?\b|rim ?click|\brims?\b|\brim\d"
                r"|\bss\b|\bxs\b|rim ?shots?"),
        ("cymbal", r"crash|\bride|splash|china|cymbal|\bcym|\bbell\b"),
        # hats: open (also half-open, let ring) or closed (also pedal, foot, choked); a hat
        # that says neither is 'hi-hat' here, and `classify` asks the GM key
        ("open-hat", rf"{_HAT}.*(open|\bop\b|\bfree\b|\bring\b)|(open\w*|\bop) ?{_HAT}|\bohh"),
        ("closed-hat", rf"{_HAT}.*(clos|\bcl\b|pedal|\bpd\b|foot|choke|tight)"
                       rf"|(clos\w*|pedal|foot) ?{_HAT}|\bchh|\bphh"),
        ("hi-hat", _HAT),
        ("tom", r"\btoms?\b|\btom\d|floor|\btom ?(hi|mid|lo)|\bft\b|\bht\b|\blt\b|\bmt\b"),
        ("kick", r"kick|\bkik|bass ?drum|bassdrum|\bbd\b|\bbd\d|\bbdrum"),
        ("snare", r"snare|\bsnr\b|\bsnr\d|\bsd\b|\bsd\d|\bsn\b|\bsn\d"),
    )
)

# General MIDI percussion keys (GM1 35-81, GM2 27-34, 82-87) -> category.
_GM_KEYS: dict[int, str] = {
    **dict.fromkeys((35, 36), "kick"),
    **dict.fromkeys((37,), "rim"),
    **dict.fromkeys((38, 40), "snare"),
    **dict.fromkeys((39,), "clap"),
    **dict.fromkeys((41, 43, 45, 47, 48, 50), "tom"),
    **dict.fromkeys((42, 44), "closed-hat"),  # closed, pedal
    **dict.fromkeys((46,), "open-hat"),
    **dict.fromkeys((49, 51, 52, 53, 55, 57, 59), "cymbal"),
}


def normalise_name(name: str) -> str:
    """'SnareRoll_02-hard.wav' -> 'snare roll 02 hard wav': lower case, words split."""
    name = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    name = re.sub(r"([A-Za-z])(\d)", r"\1 \2", name)
    name = re.sub(r"(\d)([A-Za-z])", r"\1 \2", name)
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


def category_from_name(name: str) -> str | None:
    """The category a name states, or None when it states none."""
    text = normalise_name(name)
    # Keep the digits glued to words too, so 'sd1' / 'bd2' style abbreviations match.
    glued = re.sub(r"[^a-z0-9]+", " ", name.lower())
    for cat, pattern in _NAME_RULES:
        if pattern.search(text) or pattern.search(glued):
            return cat
    return None


# The General MIDI note each kit category plays on (kick on C1 = 36), and its pad's name: the
# one table of every kit export. Each note's category above is its own (tests).
GM_NOTES = {"kick": 36, "rim": 37, "snare": 38, "clap": 39, "closed-hat": 42, "tom": 45,
            "open-hat": 46, "cymbal": 49}
PAD_NAMES = {"kick": "Kick", "rim": "Rim", "snare": "Snare", "clap": "Clap",
             "closed-hat": "Closed Hat", "tom": "Tom", "open-hat": "Open Hat", "cymbal": "Cymbal"}
# A kit's categories, in the order a kit lists its pads: every category but 'other'.
KIT_CATEGORIES = ("kick", "snare", "closed-hat", "open-hat", "tom", "clap", "rim", "cymbal")


class NoGmNote(DrumlayerError, ValueError):
    """A kit's pad that no General MIDI note plays."""


def gm_note(pad: str) -> int:
    """The General MIDI note a kit's pad plays on (GM_NOTES): the one lookup of every export
    (SFZ, DecentSampler, Hydrogen, the Drum Rack, the MIDI files). A pad with none is refused
    by name, never dropped."""
    try:
        return GM_NOTES[pad]
    except KeyError:
        raise NoGmNote(f"the pad {pad!r} has no General MIDI note: a kit's pads are "
                         f"{', '.join(GM_NOTES)} (drumlayer.data.categories.GM_NOTES)") from None


def gm_keys(pads) -> dict[int, str]:
    """{GM note: pad} of every General MIDI drum note whose category is one of the pads (kick
    on 35 and 36, snare on 38 and 40, ...): the notes a kit plays from a MIDI controller."""
    return {k: c for k, c in sorted(_GM_KEYS.items()) if c in pads}


def category_from_gm_key(key: int | None) -> str | None:
    return None if key is None else _GM_KEYS.get(int(key), "other" if 27 <= key <= 87 else None)


def classify(*names: str, key: int | None = None) -> str:
    """Category from names (most specific first), else from a GM drum key, else 'other'."""
    for name in names:
        if name:
            cat = category_from_name(name)
            if cat == "hi-hat":  # open or closed unsaid: the GM key's, else closed (most are)
                return "open-hat" if category_from_gm_key(key) == "open-hat" else "closed-hat"
            if cat is not None:
                return cat
    return category_from_gm_key(key) or "other"
