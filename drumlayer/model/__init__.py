"""The layering VAE (Flax linen): encoder, decoder, weight normalisers and the mix.
"""
