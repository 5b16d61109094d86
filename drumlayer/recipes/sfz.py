"""SFZ text, the one writer of every SFZ instrument drumlayer exports (a layered sound, a kit).

An instrument is a comment line, `<control> default_path=samples/` and then headers, each
`<tag> opcode=value ... // comment` on one line. Values are written as given: format floats
before (sfizz and other players read SFZ's plain decimal numbers).
"""

from __future__ import annotations

SAMPLES = "samples"  # the folder beside the .sfz that holds its samples


def header(tag: str, opcodes: dict, comment: str | None = None) -> str:
    """'<tag> k=v ... // comment' for opcodes {k: v} in their order."""
    line = " ".join([f"<{tag}>", *(f"{k}={v}" for k, v in opcodes.items())])
    return f"{line} // {comment}" if comment else line


def instrument(comment: str, headers: list[str]) -> str:
    """An SFZ file's text: `// comment`, the control header, then the headers, one a line."""
    return "\n".join([f"// {comment}", f"<control> default_path={SAMPLES}/", *headers]) + "\n"
