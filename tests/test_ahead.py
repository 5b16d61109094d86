import concurrent.futures

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from drumlayer.training import aot


@pytest.fixture
def pool():
    with concurrent.futures.ThreadPoolExecutor(1) as p:
        yield p


def counted(fn):
    """fn and a list that grows by one each time fn is traced."""
    traces = []

    def wrapped(*args):
        traces.append(1)
        return fn(*args)

    return wrapped, traces


def test_matching_calls_run_the_compilation_made_ahead(pool):
    fn, traces = counted(lambda x, y: x * 2 + y)
    f = aot.Ahead(jax.jit(fn), pool, lambda: (jnp.ones(3), jnp.float32(0)))
    got = f(jnp.arange(3.0), jnp.float32(1))
    np.testing.assert_array_equal(got, [1, 3, 5])
    f(jnp.zeros(3), jnp.float32(2))
    assert f.calls == {"ahead": 2, "jitted": 0}
    assert len(traces) == 1  # traced once, ahead: the calls did not trace (or compile) again


def test_more_examples_compile_ahead_too(pool):
    # an epoch's calls of two lengths (29 batches: 15 + 14): both compiled ahead
    fn, traces = counted(lambda x: x + 1)
    f = aot.Ahead(jax.jit(fn), pool, lambda: (jnp.ones(15),), more=(lambda: (jnp.ones(14),),))
    for n in (15, 14, 15, 14):
        np.testing.assert_array_equal(f(jnp.zeros(n)), np.ones(n))
    assert f.calls == {"ahead": 4, "jitted": 0}
    assert len(traces) == 2


@pytest.mark.parametrize("other", [jnp.ones(4), jnp.ones(3, jnp.int32), jnp.ones((1, 3))],
                         ids=["shape", "dtype", "rank"])
def test_other_shapes_go_to_the_jitted_function(pool, other):
    fn, traces = counted(lambda x: x + 1)
    f = aot.Ahead(jax.jit(fn), pool, lambda: (jnp.ones(3),))
    np.testing.assert_array_equal(f(other), np.asarray(other) + 1)
    assert f.calls == {"ahead": 0, "jitted": 1}
    assert len(traces) == 2  # ahead, then the jitted function at this call


def test_a_weak_type_is_part_of_the_signature(pool):
    # A Python scalar traces as a weakly typed float32 and compiles to another program than a
    # float32 array: the compilation made for one must not be used for the other.
    strong, weak = jnp.float32(1), jax.jit(lambda: 1.0)()
    assert weak.aval.weak_type and not strong.aval.weak_type
    assert aot.signature((strong,)) != aot.signature((weak,))
    fn, traces = counted(lambda x: x * 3)
    f = aot.Ahead(jax.jit(fn), pool, lambda: (strong,))
    assert float(f(weak)) == 3.0 and len(traces) == 2


def test_abstract_examples_compile_for_donated_arguments(pool):
    # The example is abstract (what `abstract` gives), so the arrays it was taken from may be
    # donated before the compilation runs; the compiled call donates as the jitted one does.
    x = jnp.arange(4.0)
    spec = aot.abstract({"x": x})
    assert aot.signature(spec) == aot.signature({"x": x})
    fn, traces = counted(lambda s: {"x": s["x"] + 1})
    f = aot.Ahead(jax.jit(fn, donate_argnums=0), pool, lambda: (spec,))
    y = f({"x": x})
    np.testing.assert_array_equal(y["x"], [1, 2, 3, 4])
    assert x.is_deleted() and len(traces) == 1


def test_a_failed_compilation_raises_at_the_call(pool):
    def bad(x):
        raise ValueError("no such shape")

    f = aot.Ahead(jax.jit(bad), pool, lambda: (jnp.ones(2),))
    with pytest.raises(ValueError, match="no such shape"):
        f(jnp.ones(2))
