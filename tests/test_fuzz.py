"""Property-based: random architectures, data and arguments thrown at the public API. Every call
either works (finite results of the right shape and dtype) or raises ValueError / TypeError whose
message names the argument at fault; nothing crashes, hangs or returns garbage.

The number of cases is set by FUZZ_EXAMPLES (default 300 per test); `pytest tests/test_fuzz.py
--hypothesis-show-statistics` reports how many ran."""

import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import bpfast  # noqa: E402
from bpfast import Layer  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

DTYPES = [np.int8, np.int64, np.uint16, np.bool_, np.float16, np.float32, np.float64,
          np.complex64, object]
ODD_VALUES = [0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e300, -1e300, 5e-324, 1e-40, 3.0e38]


HIDDEN_ACTIVATIONS = [name for name, a in bpfast.units.ACTIVATIONS.items() if a.hidden]


@st.composite
def architectures(draw):
    n_inputs = draw(st.integers(1, 3))
    inputs = {f"in{i}": draw(st.integers(1, 9)) for i in range(n_inputs)}
    names, unused, layers = list(inputs), set(inputs), []
    n_layers = draw(st.integers(1, 3))
    for k in range(n_layers):
        sources = set(draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)))
        if k == n_layers - 1:
            sources |= unused
        layers.append(Layer(f"l{k}", draw(st.integers(1, 9)), sorted(sources),
                            activation=draw(st.sampled_from(
                                list(bpfast.units.ACTIVATIONS) if k == n_layers - 1
                                else HIDDEN_ACTIVATIONS)),
                            bias=draw(st.booleans())))
        unused = (unused - sources) | {f"l{k}"}
        names.append(f"l{k}")
    return inputs, layers


@st.composite
def arrays(draw, n_cols):
    """Mostly well-formed matrices, often with something wrong: shape, dtype, values, layout."""
    n_rows = draw(st.sampled_from([0, 1, 2, 5, 33]))
    shape = draw(st.sampled_from([(n_rows, n_cols), (n_rows, n_cols), (n_rows, n_cols + 1),
                                  (n_rows,), (n_rows, n_cols, 2), (n_rows, 0)]))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.uniform(0, 1, size=shape)
    if values.size and draw(st.booleans()):
        values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from(ODD_VALUES))
    with np.errstate(all="ignore"):
        array = values.astype(dtype) if dtype is not object else values.astype(object)
    layout = draw(st.sampled_from(["c", "fortran", "strided", "readonly", "list"]))
    if layout == "fortran":
        array = np.asfortranarray(array)
    elif layout == "strided" and array.ndim >= 1:
        array = np.repeat(array, 2, axis=0)[::2]
    elif layout == "readonly":
        array = array.copy()
        array.flags.writeable = False
    elif layout == "list":
        array = array.tolist()
    return array


def check_error(exc, names):
    assert isinstance(exc, (ValueError, TypeError)), repr(exc)
    assert any(name in str(exc) for name in names), f"{exc!r} does not name one of {names}"


@FUZZ
@given(arch=architectures(), data=st.data(), dtype=st.sampled_from(["float32", "float64"]))
def test_fit_and_predict_work_or_raise_a_named_error(arch, data, dtype):
    inputs, layers = arch
    if layers[-1].activation == "softmax" and layers[-1].size == 1:
        with pytest.raises(ValueError, match="softmax over one unit"):
            bpfast.Network(inputs=inputs, layers=layers, seed=0, dtype=dtype)
        return
    net = bpfast.Network(inputs=inputs, layers=layers, seed=0, dtype=dtype)
    n_in, n_out = net.topology.n_input_cols, net.topology.n_outputs
    X = data.draw(arrays(n_in), label="X")
    T = data.draw(arrays(n_out), label="T")
    kwargs = data.draw(st.fixed_dictionaries({}, optional={
        "lr": st.sampled_from([0.1, 0.0, -1.0, np.nan, 1e-3, 5]),
        "momentum": st.sampled_from([0.0, 0.9, 1.0, -0.5, 2]),
        "n_sweeps": st.sampled_from([0, 1, 3, -1, 2.5]),
        "batch_size": st.sampled_from([1, 2, 0, -3, 10**9]),
        "weight_decay": st.sampled_from([0.0, 0.01, 1.0, -0.1]),
        "n_threads": st.sampled_from([1, 2, 4, 0, -1, 10**9, "2"]),
        "loss": st.sampled_from(["sse", "dead_zone", "mse", "cross_entropy"]),
        "reduction": st.sampled_from(["sum", "mean", "max"]),
        "optimizer": st.sampled_from(["momentum", "adam", "sgd"]),
        "clip_norm": st.sampled_from([None, 1.0, 0.0, -1.0, np.inf]),
        "stop_tol": st.sampled_from([None, 0.2, 0.0, -1.0]),
    }), label="kwargs")
    before = net.params.copy()
    try:
        result = net.fit(X, T, **kwargs)
    except FloatingPointError:
        assert np.isfinite(net.params).all()  # diverged: restored to finite weights
    except (ValueError, TypeError) as exc:
        check_error(exc, ["X", "T", "n_threads", "loss"] + list(kwargs))  # loss: softmax needs one
        np.testing.assert_array_equal(net.params, before)  # a refused call changes nothing
    else:
        assert result.n_sweeps >= 0 and np.isfinite(net.params).all()
        assert len(result.errors) == result.n_sweeps
    try:
        y = net.predict(X)
    except (ValueError, TypeError) as exc:
        check_error(exc, ["X"])
    else:
        assert y.shape == (np.asarray(X).shape[0], n_out) and y.dtype == np.dtype(dtype)
        assert np.isfinite(y).all()


@FUZZ
@given(sizes=st.lists(st.one_of(st.integers(-3, 12), st.floats(0, 5), st.just(2**31),
                                st.none(), st.text(max_size=2)), min_size=0, max_size=5),
       dtype=st.sampled_from(["float32", "float64", "float16", "int", None, 3]),
       init_range=st.sampled_from([0.3, 0.0, -1.0, np.inf, np.nan, "x"]),
       seed=st.sampled_from([0, 7, -1, 2**70, 1.5, None]))
def test_constructor_works_or_raises_a_named_error(sizes, dtype, init_range, seed):
    try:
        net = bpfast.Network(sizes, dtype=dtype, init_range=init_range, seed=seed)
    except (ValueError, TypeError) as exc:
        check_error(exc, ["size", "chain", "dtype", "init_range", "seed", "describe the network"])
    else:
        assert np.isfinite(net.params).all()
        assert np.all(np.abs(net.params) <= net.init_range)
