"""Drum loops in, kits of a person's own samples that sound like them, and their grooves, out:
`python -m drumlayer.loops` (drumlayer/loops/command.py)."""
