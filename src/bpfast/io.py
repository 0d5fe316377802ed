"""Saving and loading networks: a documented, versioned format that needs no pickle to read.

A bpfast file is a zip archive (stored, not compressed) of three members:

``bpfast.json``
    ``{"format": "bpfast-network", "format_version": 1, "bpfast_version": ...,
    "topology": {"inputs": {name: size}, "layers": [{name, size, sources, activation, bias}]},
    "dtype": "float32" | "float64", "init_range": float, "seed": int,
    "rng_state": <numpy PCG64 state>, "shuffle_state": int, "n_params": int}``
``params.npy``, ``velocity.npy``
    The flat parameter arena and the momentum velocities (NumPy .npy, shape (n_params,)).

Loading reads JSON and .npy with ``allow_pickle=False``: nothing in a file is ever executed. Every
problem with a file (not a zip, truncated, a failed checksum, missing members, a newer format,
an invalid architecture, arrays of the wrong shape or dtype, non-finite values) raises ValueError
naming the file and the problem. Saving writes to a temporary file in the same folder and renames
it over the target, so a failed save leaves any earlier file untouched.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile

import numpy as np

from . import __version__
from ._validation import check_int, check_real
from .network import DTYPES, Network
from .topology import Layer, Topology

FORMAT = "bpfast-network"
FORMAT_VERSION = 1
META, PARAMS, VELOCITY = "bpfast.json", "params.npy", "velocity.npy"


def save(net: Network, path) -> None:
    """Write `net` (architecture, weights, velocities, random states) to `path` atomically."""
    if not isinstance(net, Network):
        raise TypeError(f"save() needs a bpfast.Network, got {type(net).__name__}")
    path = os.fspath(path)
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "bpfast_version": __version__,
        "topology": net.topology.describe(), "dtype": net.dtype.name,
        "init_range": net.init_range, "seed": net.seed,
        "rng_state": net._rng.bit_generator.state, "shuffle_state": net._shuffle_state,
        "n_params": int(net.topology.n_params),
    }
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr(META, json.dumps(meta, indent=1))
                for name, array in ((PARAMS, net.params), (VELOCITY, net.velocity)):
                    buffer = io.BytesIO()
                    np.lib.format.write_array(buffer, np.ascontiguousarray(array),
                                              allow_pickle=False)
                    archive.writestr(name, buffer.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_array(archive, name, path, dtype, n):
    try:
        with archive.open(name) as member:
            array = np.lib.format.read_array(io.BytesIO(member.read()), allow_pickle=False)
    except KeyError:
        raise ValueError(f"{path}: not a complete bpfast file (no {name})") from None
    except ValueError as exc:
        raise ValueError(f"{path}: {name} is not a plain numeric array ({exc})") from None
    if array.dtype != dtype or array.shape != (n,):
        raise ValueError(f"{path}: {name} has dtype {array.dtype} and shape {array.shape}; the "
                         f"architecture needs {dtype.name} of shape ({n},)")
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: {name} contains NaN or infinite values")
    return array


def load(path) -> Network:
    """Read a network written by :func:`save`. Raises ValueError for any damaged or foreign file."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return _from_archive(archive, path)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise ValueError(f"{path}: not a bpfast file, or it is truncated or corrupted ({exc})") \
            from None


def _from_archive(archive, path) -> Network:
    try:
        meta = json.loads(archive.read(META).decode("utf-8"))
    except KeyError:
        raise ValueError(f"{path}: not a bpfast file (no {META})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: {META} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a bpfast network file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: written in format version {version} by bpfast "
                         f"{meta.get('bpfast_version')}; this bpfast ({__version__}) reads up to "
                         f"version {FORMAT_VERSION}. Upgrade bpfast to load it.")
    try:
        topo = meta["topology"]
        topology = Topology(topo["inputs"], [Layer(**layer) for layer in topo["layers"]])
        dtype = np.dtype(DTYPES[meta["dtype"]])
        if meta["n_params"] != topology.n_params:
            raise ValueError(f"n_params {meta['n_params']} does not match the architecture's "
                             f"{topology.n_params}")
        seed = check_int("seed", meta["seed"], low=0)
        init_range = check_real("init_range", meta["init_range"], low=0)
        shuffle_state = int(meta["shuffle_state"])
        if not 0 <= shuffle_state < 2**64:
            raise ValueError("shuffle_state out of range")
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng_state"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: invalid network description in {META}: "
                         f"{type(exc).__name__}: {exc}") from None
    params = _read_array(archive, PARAMS, path, dtype, topology.n_params)
    velocity = _read_array(archive, VELOCITY, path, dtype, topology.n_params)
    net = Network.__new__(Network)
    net.__setstate__({"topology": topology.describe(), "dtype": dtype.name,
                      "init_range": init_range, "seed": seed,
                      "rng": rng.bit_generator.state, "params": params, "velocity": velocity,
                      "shuffle_state": shuffle_state})
    return net
