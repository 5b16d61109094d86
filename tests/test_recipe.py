"""recipe: the JSON a recipe is, its bounds, and the names it carries (checked by hand)."""

import math

import pytest
from pydantic import ValidationError

from drumlayer.recipes.recipe import NAME_MAX, Recipe, display_name, printable, shorten


def test_printable_shows_bytes_that_are_not_utf8_as_escapes():
    undecodable = b"snare \xe9\xff.wav".decode("utf-8", "surrogateescape")
    assert printable(undecodable) == "snare \\xe9\\xff.wav"
    assert printable("caf\u00e9 \u9f13.wav") == "caf\u00e9 \u9f13.wav"  # UTF-8 names unchanged
    printable(undecodable).encode("utf-8")  # JSON can hold it


def test_display_name_keeps_a_folder_paths_library_and_kit():
    assert display_name("lmms-common/usr/share/lmms/samples/drums / snare03") == (
        "lmms-common … drums / snare03")
    assert display_name("Snares/Acoustic / snare 1") == "Snares/Acoustic / snare 1"
    assert display_name("GMRockKit / Snare Rock") == "GMRockKit / Snare Rock"
    # a soundfont's kit is 'font / preset': three names, none a path
    assert display_name("FluidR3_GM.sf2 / Standard / Snare 1") == (
        "FluidR3_GM.sf2 / Standard / Snare 1")
    assert display_name("a/b/c/ / x") == "a … c / x"
    undecodable = b"kit/\xe9/x/y / snare".decode("utf-8", "surrogateescape")
    display_name(undecodable).encode("utf-8")


def test_shorten_keeps_start_and_end_in_exactly_most_characters():
    name = "".join(chr(ord("a") + i % 26) for i in range(400))
    out = shorten(name, 300)
    assert len(out) == 300
    assert out == name[:100] + "..." + name[-197:]
    assert shorten(name[:300], 300) == name[:300]  # at the limit: unchanged
    assert shorten(name[:301], 300) != name[:301]
    assert len(shorten(name[:301], 300)) == 300
    assert shorten("kick.wav") == "kick.wav"
    assert len(shorten("x" * 1000)) == NAME_MAX


def test_velocity_layers_that_differ_at_the_end_keep_distinct_names():
    stem = "/home/me/samples/" + "Acoustic Kit Deluxe/" * 20 + "Snare Center "
    names = [shorten(stem + f"v{v}.wav", 120) for v in range(1, 6)]
    assert len(set(names)) == 5
    assert all(n.endswith(f"v{v}.wav") for v, n in zip(range(1, 6), names, strict=True))
    assert all(n.startswith("/home/me/samples/") for n in names)


def test_recipe_defaults_and_what_it_ignores():
    r = Recipe(latent=[0.5, -1.0], something_else=3)
    assert r.version == 2 and r.prune == 0.0 and r.gain_db == 0.0 and r.shaping == {}
    assert r.envelope.attack == 0.0 and r.envelope.hold == 1.0 and r.envelope.decay == 1.0
    assert r.locks == {} and r.offsets_ms == {} and r.residual is None
    assert Recipe.model_validate_json('{"latent": [1], "locks": {"3": 0.25}}').locks == {3: 0.25}


@pytest.mark.parametrize("bad", [
    {"latent": [1e5]}, {"latent": [math.nan]}, {"latent": [0.0] * 1025},
    {"latent": [0], "locks": {"0": 1.5}}, {"latent": [0], "locks": {"0": -0.01}},
    {"latent": [0], "prune": -0.1},
    {"latent": [0], "offsets_ms": {"1": 600}}, {"latent": [0], "gain_db": 30},
    {"latent": [0], "gain_db": -61}, {"latent": [0], "residual": [2.0]},
    {"latent": [0], "muted": list(range(4097))}, {"latent": [0], "name": "n" * 301},
    {"latent": [0], "version": 3}, {"latent": [0], "envelope": {"decay": 0.001}},
    {"latent": [0], "shaping": {"0": {"pitch_cents": 2400}}},
    {"latent": [0], "envelope": {"attack": 0.1, "release": 1}}, {},
])
def test_recipe_rejects_values_out_of_bounds(bad):
    with pytest.raises(ValidationError):
        Recipe.model_validate(bad)


def test_edit_weights_by_hand_residual_then_locks_prune_mute_solo():
    """The order of a recipe's edits, worked out by hand: the refinement's residual on the
    decoded weights (clipped to [0, 1]), then the locks (which set a weight, whatever the
    residual), then pruning, mutes, solo."""
    import numpy as np

    from drumlayer.recipes.render import edit_weights

    d = np.array([0.2, 0.5, 0.1, 0.3, 0.25], np.float32)
    res = np.array([0.1, 0.6, -0.2, 0.0, 0.0], np.float32)
    np.testing.assert_allclose(edit_weights(d, {}, set(), set(), 0.0, res),
                               [0.3, 1.0, 0.0, 0.3, 0.25], atol=1e-7)
    np.testing.assert_allclose(edit_weights(d, {1: 0.4}, set(), set(), 0.0, res),
                               [0.3, 0.4, 0.0, 0.3, 0.25], atol=1e-7)
    np.testing.assert_allclose(edit_weights(d, {1: 0.4, 2: 0.05}, set(), set(), 0.28, res),
                               [0.3, 0.4, 0.0, 0.3, 0.0], atol=1e-7)  # a lock below is pruned
    np.testing.assert_allclose(edit_weights(d, {1: 0.4}, {0}, set(), 0.0, res),
                               [0.0, 0.4, 0.0, 0.3, 0.25], atol=1e-7)
    np.testing.assert_allclose(edit_weights(d, {}, {3}, {1, 3}, 0.0, res),
                               [0.0, 1.0, 0.0, 0.0, 0.0], atol=1e-7)  # muted inside a solo
    np.testing.assert_allclose(edit_weights(d, {}, set(), set(), 0.0), d)  # nothing: decoded
