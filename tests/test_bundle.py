"""bundle: what the bundle stage saves is what Bundle.load gives back."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from drumlayer.data import fullband
from drumlayer.features import measures
from drumlayer.recipes import bundle
from drumlayer.workdir import Workdir


def test_save_then_load_gives_back_every_array(smoke_run, tmp_path):
    b = bundle.Bundle.load(str(smoke_run))
    wd = Workdir(str(tmp_path / "copy"))
    full = fullband.FullBand(np.asarray(b.full_sources) * 0.5, 44100, {"why": 1},
                             np.zeros(b.k))
    bundle.save(wd, b, 22050, full)
    c = bundle.Bundle.load(wd.root)
    np.testing.assert_array_equal(c.full_sources, full.audio)
    assert c.full_rate == 44100
    assert b.pca is not None and set(c.pca) == set(b.pca)
    for name, x in b.pca.items():
        np.testing.assert_array_equal(c.pca[name], x)
    np.testing.assert_allclose(c.mix_full(np.eye(b.k)[:2]), full.audio[:2])
    # saved again while c is open (a studio on a workdir whose main job is rerun): c keeps
    # what it loaded, the next load gets the new
    again = fullband.FullBand(full.audio * 2, 44100, {}, np.zeros(b.k))
    bundle.save(wd, b, 22050, again)
    np.testing.assert_array_equal(c.full_sources, full.audio)
    np.testing.assert_array_equal(bundle.Bundle.load(wd.root).full_sources, again.audio)
    for x, y in zip(jax.tree_util.tree_leaves(b.params), jax.tree_util.tree_leaves(c.params),
                    strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(c.sources, b.sources)
    np.testing.assert_array_equal(c.std, b.std)
    assert c.names == b.names and c.config == b.config
    assert (c.k, c.latent) == (8, 4)
    feats = np.load(Workdir(str(smoke_run)).features.clips)
    p = bundle.latent_pca(c, feats, 3, block=7)  # blocks of 7: the same as one pass
    want = measures.pca(np.asarray(c.encode(feats)[0]), 3)
    for k in want:
        np.testing.assert_allclose(p[k], want[k], rtol=1e-4, atol=1e-5)


def test_a_missing_file_is_a_bundle_error_naming_it(smoke_run, tmp_path):
    shutil.copytree(smoke_run / "bundle", tmp_path / "bundle")
    os.remove(tmp_path / "bundle" / "standardisation.npz")
    with pytest.raises(bundle.BundleError, match="standardisation.npz missing.*run the main"):
        bundle.Bundle.load(str(tmp_path))


def test_the_bundle_builds_the_model_its_config_names(smoke_run):
    b = bundle.Bundle.load(str(smoke_run))
    m = json.loads((smoke_run / "bundle" / "bundle.json").read_text())["config"]["model"]
    assert (b.model.latent, b.model.encoder_hidden, b.model.decoder_hidden,
            b.model.normaliser) == (m["latent"], m["encoder_hidden"], m["decoder_hidden"],
                                    m["normaliser"])
    w = np.asarray(b.decode(np.zeros((2, b.latent))))
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["params.msgpack", "sources.npy", "full_sources.npy",
                                  "standardisation.npz", "bundle.json", "pca.npz"])
def test_a_damaged_file_is_one_line_naming_it(smoke_run, tmp_path, name):
    shutil.copytree(smoke_run / "bundle", tmp_path / "bundle")
    path = tmp_path / "bundle" / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(bundle.BundleError) as e:
        bundle.Bundle.load(str(tmp_path))
    msg = str(e.value)
    assert msg.startswith(f"{path} is damaged (") and "\n" not in msg
    assert "rerun the main job" in msg


def _wrong_shape(path, name):
    """Rewrite one bundle file with one array cut short, as a copy from another run would be."""
    if name == "params.msgpack":
        from flax import serialization

        leaves, tree = jax.tree_util.tree_flatten(
            serialization.msgpack_restore(path.read_bytes()))
        i = next(i for i, v in enumerate(leaves) if np.ndim(v) == 2)
        leaves[i] = leaves[i][:, :-1]
        path.write_bytes(serialization.msgpack_serialize(
            jax.tree_util.tree_unflatten(tree, leaves)))
    elif name.endswith(".npy"):
        np.save(path, np.load(path)[:-1])
    else:
        arrays = dict(np.load(path))
        first = sorted(arrays)[0]
        arrays[first] = arrays[first][..., :-1]
        np.savez(path, **arrays)


@pytest.mark.parametrize("name", ["params.msgpack", "sources.npy", "full_sources.npy",
                                  "standardisation.npz", "pca.npz"])
def test_a_file_of_the_wrong_shape_is_one_line_naming_it(smoke_run, tmp_path, name):
    """Each file against bundle.json at load: otherwise the studio started with the wrong k
    and answered every request with a 500."""
    shutil.copytree(smoke_run / "bundle", tmp_path / "bundle")
    path = tmp_path / "bundle" / name
    _wrong_shape(path, name)
    with pytest.raises(bundle.BundleError) as e:
        bundle.Bundle.load(str(tmp_path))
    msg = str(e.value)
    assert msg.startswith(f"{path} does not fit ") and "\n" not in msg, msg
    assert "rerun the main job" in msg


def test_a_bundle_from_before_full_band_plays_its_22khz_sources(smoke_run, tmp_path):
    shutil.copytree(smoke_run / "bundle", tmp_path / "bundle")
    meta = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert meta["full_band"]["band_limited"] == {
        "procedural: synthesised at 22.05 kHz, no recording": 8}
    del meta["full_band"]
    (tmp_path / "bundle" / "bundle.json").write_text(json.dumps(meta))
    os.remove(tmp_path / "bundle" / "full_sources.npy")
    b = bundle.Bundle.load(str(tmp_path))
    assert b.full_rate == 22050 and b.full_sources is b.sources
