"""A whole kit: job (one model per category over a shared corpus) and export (pads rendered
to SFZ and Hydrogen kits).
"""
