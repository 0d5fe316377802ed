"""Layer and Topology specs: every mistake is a TypeError or ValueError, raised where the spec is
written, that names the layer and the field; the tables built from valid specs are unchanged."""

import dataclasses

import numpy as np
import pytest

import bpfast
from bpfast import Layer, Topology


@pytest.mark.parametrize("kwargs,error,match", [
    ({"name": 3}, TypeError, "a layer name must be a non-empty string, got 3"),
    ({"name": ""}, TypeError, "a layer name must be a non-empty string"),
    ({"name": None}, TypeError, "a layer name must be a non-empty string"),
    ({"size": 0}, ValueError, "the size of layer 'h' must be between 1 and"),
    ({"size": -2}, ValueError, "the size of layer 'h' must be between 1 and"),
    ({"size": 2**31}, ValueError, "the size of layer 'h' must be between 1 and"),
    ({"size": 2.0}, TypeError, "the size of layer 'h' must be a positive integer"),
    ({"size": "3"}, TypeError, "the size of layer 'h' must be a positive integer"),
    ({"size": True}, TypeError, "the size of layer 'h' must be a positive integer"),
    ({"size": None}, TypeError, "the size of layer 'h' must be a positive integer"),
    ({"sources": 5}, TypeError, "layer 'h': sources must be a name or a list of names.*got 5"),
    ({"sources": None}, TypeError, "layer 'h': sources must be a name or a list of names"),
    ({"sources": [1]}, TypeError, "layer 'h': sources must be names \\(strings\\), got 1"),
    ({"sources": ["a", b"b"]}, TypeError, "layer 'h': sources must be names \\(strings\\)"),
    ({"sources": []}, ValueError, "layer 'h' has no sources"),
    ({"sources": ["a", "a"]}, ValueError, "layer 'h' lists a source twice"),
    ({"activation": "swish"}, ValueError, "layer 'h': unknown activation 'swish'"),
    ({"activation": 3}, TypeError, "layer 'h': activation must be one of"),
    ({"activation": ["tanh"]}, TypeError, "layer 'h': activation must be one of"),
    ({"activation": None}, TypeError, "layer 'h': activation must be one of"),
    ({"bias": "no"}, TypeError, "layer 'h': bias must be True or False, got 'no'"),
    ({"bias": 1}, TypeError, "layer 'h': bias must be True or False"),
    ({"bias": None}, TypeError, "layer 'h': bias must be True or False"),
    ({"bias": np.float64(0.0)}, TypeError, "layer 'h': bias must be True or False"),
])
def test_a_bad_layer_spec_fails_where_the_layer_is_built(kwargs, error, match):
    spec = {"name": "h", "size": 3, "sources": ["a"], **kwargs}
    with pytest.raises(error, match=match):
        Layer(**spec)


def test_valid_specs_are_normalised():
    layer = Layer("h", np.int64(3), (s for s in ["a", "b"]), activation="tanh",
                  bias=np.bool_(False))
    assert layer.sources == ("a", "b")
    assert type(layer.size) is int and layer.size == 3
    assert layer.bias is False
    assert Layer("h", 3, "a").sources == ("a",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        layer.size = 4


@pytest.mark.parametrize("make,match", [
    (lambda: Topology.chain(5), "sizes must be a list of layer sizes"),
    (lambda: Topology.chain(None), "sizes must be a list of layer sizes"),
    (lambda: Topology.chain("621"), "sizes must be a list of layer sizes"),
    (lambda: bpfast.Network(5), "sizes must be a list of layer sizes"),
    (lambda: Topology({"a": 2}, 5), "layers must be a list of bpfast.Layer objects"),
    (lambda: Topology({"a": 2}, [("h", 2, ["a"])]), "layers must be bpfast.Layer objects"),
    (lambda: Topology.chain([3, 2, 1], bias="no"), "bias must be True or False"),
    (lambda: Topology.chain([3, 2, 1], activation=None), "activation must be one of"),
])
def test_bad_topology_arguments_name_the_argument(make, match):
    with pytest.raises(TypeError, match=match):
        make()


def test_accumulate_flags_mark_edges_whose_source_also_feeds_a_higher_layer():
    """The flags against their definition, on a DAG where sources feed several layers."""
    topology = Topology({"x": 2, "y": 3}, [
        Layer("a", 2, ["x"]), Layer("b", 3, ["x", "y", "a"]), Layer("c", 1, ["a", "b", "y"]),
    ])
    for l in range(topology.n_inputs, topology.n_layers):
        for e in range(topology.src_start[l], topology.src_start[l + 1]):
            source = int(topology.src_layer[e])
            consumers = [m for m in range(topology.n_inputs, topology.n_layers)
                         if source in topology.src_layer[topology.src_start[m]:
                                                         topology.src_start[m + 1]]]
            assert topology.accumulate[e] == (max(consumers) > l)
    assert topology.accumulate.tolist() == [1, 0, 1, 1, 0, 0, 0]


def test_unused_layers_and_repeated_names_are_still_reported():
    with pytest.raises(ValueError, match=r"\['x', 'a'\] feed no layer above them"):
        Topology({"x": 2, "y": 1}, [Layer("a", 2, ["y"]), Layer("b", 1, ["y"])])
    with pytest.raises(ValueError, match=r"repeated: \['a', 'x'\]"):
        Topology({"x": 2}, [Layer("a", 2, ["x"]), Layer("x", 2, ["a"]), Layer("a", 1, ["x"])])
