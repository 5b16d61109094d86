"""Data preparation, no JAX: from folders of samples and drum kits to a corpus of one-shots.

audio (decode, resample, trim, normalise, write) -> discovery (walk folders; candidates,
categories, kit_formats read Hydrogen, SFZ and SF2 kits) -> corpus (decode, deduplicate, split
by kit: split; augment; procedural snares when no samples are found) -> dataset (the corpus as
arrays); fullband (the same clips at their recordings' own rate, for rendering); npy_rows
(row-wise .npy files).
"""
