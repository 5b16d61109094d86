"""The layering VAE: one builder, parameters and their abstract shapes, the weight normalisers
and the KL against closed forms."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from drumlayer.model import vae

MC = vae.ModelConfig(latent=4, encoder_hidden=16, decoder_hidden=8)


def test_create_builds_from_the_config_and_the_source_count():
    m = vae.create(5, MC)
    assert (m.sources, m.latent, m.encoder_hidden, m.decoder_hidden, m.normaliser) == (
        5, 4, 16, 8, "softmax")
    params = vae.init_params(m, 10, seed=0)
    assert params["encoder"]["hidden"]["kernel"].shape == (10, 16)
    assert params["encoder"]["out"]["kernel"].shape == (16, 2 * 4)
    assert params["decoder"]["out"]["kernel"].shape == (8, 5)
    out = m.apply({"params": params}, jnp.ones((3, 10)), jnp.zeros((3, 4)))
    assert out["weights"].shape == (3, 5)
    np.testing.assert_allclose(out["z"], out["mean"])  # eps = 0: z is the mean
    np.testing.assert_allclose(m.apply({"params": params}, out["z"], method=m.decode),
                               out["weights"], atol=1e-6)


def test_abstract_params_have_the_shapes_of_real_ones_and_compute_nothing():
    m = vae.create(5, MC)
    real = vae.init_params(m, 10, seed=3)
    abstract = vae.abstract_params(m, 10)
    assert jax.tree_util.tree_structure(real) == jax.tree_util.tree_structure(abstract)
    for r, a in zip(jax.tree_util.tree_leaves(real), jax.tree_util.tree_leaves(abstract),
                    strict=True):
        assert isinstance(a, jax.ShapeDtypeStruct) and (a.shape, a.dtype) == (r.shape, r.dtype)


def test_model_config_from_a_mapping():
    d = dataclasses.asdict(MC)
    assert vae.ModelConfig.from_mapping(d) == MC
    assert vae.ModelConfig.from_mapping({}) == vae.ModelConfig()
    with pytest.raises(ValueError, match="unknown fields.*'latnet'"):
        vae.ModelConfig.from_mapping({**d, "latnet": 8})


def test_init_is_seeded():
    m = vae.create(5, MC)
    a, b, c = (vae.init_params(m, 10, seed=s) for s in (0, 0, 1))
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                    jax.tree_util.tree_leaves(b), strict=True))
    assert not np.array_equal(a["decoder"]["out"]["kernel"], c["decoder"]["out"]["kernel"])


def test_sparsemax_and_normalisers():
    logits = jnp.array([[3.0, 1.0, 0.2, -1.0], [0.0, 0.0, 0.0, 0.0]])
    sm = np.asarray(vae.sparsemax(logits))
    np.testing.assert_allclose(sm.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(sm[0], [1.0, 0.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(sm[1], 0.25, atol=1e-6)
    z = jnp.array([[0.5, 0.4, -2.0]])
    np.testing.assert_allclose(vae.sparsemax(z), [[0.55, 0.45, 0.0]], atol=1e-6)
    for kind in vae.NORMALISERS:
        w = np.asarray(vae.normalise(logits, kind))
        assert np.all(w >= 0) and np.allclose(w.sum(-1), 1.0, atol=1e-5)


def test_kl_matches_closed_form():
    mean = jnp.array([[0.5, -1.0]])
    scale = jnp.array([[2.0, 0.5]])
    expect = 0.5 * sum(m**2 + s**2 - 1 - 2 * np.log(s) for m, s in ((0.5, 2.0), (-1.0, 0.5)))
    assert float(vae.kl_nats(mean, scale)[0]) == pytest.approx(expect, rel=1e-6)


def test_the_forward_pass_samples_z_from_the_encoders_gaussian():
    """z = mean + scale * eps (the reparameterisation): with noise, the weights are the decoding
    of that z, not of the mean."""
    model = vae.LayeringVAE(sources=5, latent=3, encoder_hidden=16, decoder_hidden=8)
    params = vae.init_params(model, 7, 0)
    x = jax.random.normal(jax.random.key(1), (4, 7))
    eps = jax.random.normal(jax.random.key(2), (4, 3))
    out = model.apply({"params": params}, x, eps)
    mean, scale = model.apply({"params": params}, x, method=vae.LayeringVAE.encode)
    assert np.all(np.asarray(scale) > 0)
    np.testing.assert_allclose(out["z"], mean + scale * eps, rtol=1e-6, atol=1e-6)
    decode = lambda z: model.apply({"params": params}, z, method=vae.LayeringVAE.decode)  # noqa: E731
    np.testing.assert_allclose(out["weights"], decode(mean + scale * eps), rtol=1e-5, atol=1e-7)
    assert not np.allclose(out["weights"], decode(mean), atol=1e-4)
