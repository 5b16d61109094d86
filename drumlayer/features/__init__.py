"""Pure, jit-compiled JAX on clips [..., S]: the model's features and what evaluates mixes.

spectral (STFT and the RMS-weighted spectrum, with their custom gradients), attack (log-attack
time), extractor (the model's features: both together), descriptors (mel, MFCC, centroid),
measures (distances and statistics of mixes), selection (greedy Frank-Wolfe source selection),
batching (chunks inside jit, padded blocks from the host), featurize (features of a .npy file).
"""
