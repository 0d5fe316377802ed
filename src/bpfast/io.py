"""Saving and loading networks: a documented, versioned format that needs no pickle to read.

A bpfast file is a zip archive (stored, not compressed) of three members:

``bpfast.json``
    ``{"format": "bpfast-network", "format_version": 1 or 2, "bpfast_version": ...,
    "topology": {"inputs": {name: size}, "layers": [{name, size, sources, activation, bias}]},
    "dtype": "float32" | "float64", "init_range": float, "seed": int,
    "rng_state": <numpy PCG64 state>, "shuffle_state": int, "n_params": int,
    "optimizer": "momentum" | "adam", "init": "uniform" | "glorot" | "he"}``
    ("init", optional, says how the weights were first drawn; "uniform" if absent.
    "optimizer" from format version 2 on; version 1 files are "momentum". A network saved with
    momentum's state is written as version 1, so older bpfast reads it.)
    Version 3 adds weight sharing and recurrent nets: ``"topology"`` may hold ``"ties"``, a list
    of ``{"weights": [[layer, source], ...], "biases": [layer, ...], "index": null or one list
    of lists of ints per block, "gradient": "sum" | "mean" | number}`` (bpfast.Tie), and a
    :class:`bpfast.RecurrentNetwork` adds ``"recurrent"``: its n_inputs, n_hidden, n_outputs,
    n_steps, output_feedback, activation, output_activation, bias and gradient. Only such
    networks are written as version 3 (params then hold each shared parameter once).
``params.npy``, ``velocity.npy``
    The flat parameter arena and the optimiser's state (NumPy .npy, format 1.0 or 2.0): the
    momentum velocities, shape (n_params,), or Adam's moments and count, shape
    (2 n_params + 1,). These members may carry zip64 extra fields; readers need not care.

A population (:class:`bpfast.Population`) is saved the same way, with ``"format":
"bpfast-population", "format_version": 1`` (2 if its topology has ties) and, in place of one network's fields, ``"n_members"``
and the lists ``"seeds"``, ``"init_range"`` and ``"shuffle_state"`` (one value per member);
``params.npy`` and ``velocity.npy`` then hold one row per member, shapes (n_members, n_params) and
(n_members, state length). Members' init generators are not stored: each is its seed's.

Loading reads JSON and .npy with ``allow_pickle=False``: nothing in a file is ever executed. Every
problem with a file (not a zip, truncated, a failed checksum, missing, compressed or encrypted
members, a newer format, an invalid architecture, arrays of the wrong shape or dtype, non-finite
values) raises ValueError naming the file and the problem; only the errors of reaching the file
(FileNotFoundError, PermissionError, IsADirectoryError) are left as they are. Loading never reads
more than the file's own metadata says a member holds, and no member larger than the file, so a
small file cannot make it allocate a lot of memory.

Saving writes to a temporary file in the target's folder, fsyncs it, renames it over the target
and fsyncs the folder, so the target is always either the earlier file (or absent) or the whole
new one, also when saving fails or is interrupted with Ctrl-C; no temporary file is left behind.
A symlink is followed (its final target is written); a replaced file keeps its permissions and,
where we may set them, its owner and group; a new file gets ``0o666`` less the umask.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import reprlib
import signal
import stat
import tempfile
from typing import Any
import threading
import tokenize
import zipfile

import numpy as np

from . import __version__
from ._validation import check_finite_state, check_int, check_real
from .network import DTYPES, INITS, OPTIMIZERS, Network, state_length
from .population import Population
from .recurrent import RecurrentNetwork
from .topology import Layer, Tie, Topology

FORMAT = "bpfast-network"
FORMAT_VERSION = 3  # the newest this bpfast reads and writes (see the module docstring)
POPULATION_FORMAT, POPULATION_FORMAT_VERSION = "bpfast-population", 2
META, PARAMS, VELOCITY = "bpfast.json", "params.npy", "velocity.npy"
LAYER_FIELDS = ("name", "size", "sources", "activation", "bias")
TIE_FIELDS = ("weights", "biases", "index", "gradient")

# Short and fixed, so that a target name of the longest length the filesystem allows still leaves
# room for the temporary file's name; the leading dot keeps it out of ordinary listings.
TMP_PREFIX, TMP_SUFFIX = ".bpfast-", ".tmp"

# Zip flag bits for traditional encryption, compressed patched data and strong encryption.
UNREADABLE_FLAGS = 0x01 | 0x20 | 0x40

# Headers numpy writes for a 1-D float array are about 128 bytes; this is numpy's own limit.
MAX_NPY_HEADER = 10_000


# -- saving -------------------------------------------------------------------------------------

def save(net: Network, path) -> None:
    """Write `net` (architecture, weights, velocities, random states) to `path` atomically.

    `path` is a str, bytes or os.PathLike. Raises IsADirectoryError for a directory and
    ValueError for a FIFO, socket or device, before writing anything.
    """
    if not isinstance(net, Network):
        raise TypeError(f"save() needs a bpfast.Network, got {type(net).__name__}")
    path = _path(path)
    check_finite_state("cannot save the network", params=net.params, velocity=net.velocity)
    fields = {
        "format": FORMAT, "format_version": 1 if net.optimizer == "momentum" else 2,
        "bpfast_version": __version__, "optimizer": net.optimizer,
        "topology": net.topology.describe(), "dtype": net.dtype.name,
        "init_range": net.init_range, "init": net.init, "seed": net.seed,
        "rng_state": net._rng_state, "shuffle_state": net._shuffle_state,
        "n_params": int(net.topology.n_params),
    }
    if isinstance(net, RecurrentNetwork):
        fields["recurrent"] = dict(net.recurrent)
    if net.topology.ties or isinstance(net, RecurrentNetwork):
        fields["format_version"] = 3
    meta = json.dumps(fields, indent=1).encode("utf-8")
    arrays = ((PARAMS, np.ascontiguousarray(net.params)),
              (VELOCITY, np.ascontiguousarray(net.velocity)))
    _write_file(path, meta, arrays)


def save_population(pop: Population, path) -> None:
    """Write `pop` (architecture, every member's weights, optimiser state, seed and shuffling
    state) to `path` atomically, as :func:`save` writes a network."""
    if not isinstance(pop, Population):
        raise TypeError(f"save_population() needs a bpfast.Population, got {type(pop).__name__}")
    path = _path(path)
    check_finite_state("cannot save the population", params=pop.params, velocity=pop.velocity)
    meta = json.dumps({
        "format": POPULATION_FORMAT, "format_version": 2 if pop.topology.ties else 1,
        "bpfast_version": __version__, "optimizer": pop.optimizer,
        "topology": pop.topology.describe(), "dtype": pop.dtype.name, "init": pop.init,
        "n_members": len(pop), "n_params": int(pop.topology.n_params), "seeds": pop.seeds,
        "init_range": pop.init_range.tolist(),
        "shuffle_state": [int(s) for s in pop._shuffle],
    }, indent=1).encode("utf-8")
    arrays = ((PARAMS, np.ascontiguousarray(pop.params)),
              (VELOCITY, np.ascontiguousarray(pop.velocity)))
    _write_file(path, meta, arrays)


def _path(path):
    """os.fspath(path), or a TypeError that says a file name is wanted (files are replaced and
    checked whole, which a file object the caller opened does not allow)."""
    try:
        return os.fspath(path)
    except TypeError:
        raise TypeError(f"a file name (str or os.PathLike) is needed, not "
                        f"{type(path).__name__}: bpfast writes a file whole or not at all, and "
                        f"reads and checks it whole, by name") from None


def _write_file(path, meta: bytes, arrays) -> None:
    """The archive of `meta` and `arrays` at `path`, atomically (see the module docstring)."""
    target, replaced = _resolve_target(path)
    mode = _new_file_mode() if replaced is None else stat.S_IMODE(replaced.st_mode)
    folder = os.path.dirname(target)
    prefix: Any = TMP_PREFIX if isinstance(folder, str) else os.fsencode(TMP_PREFIX)
    suffix: Any = TMP_SUFFIX if isinstance(folder, str) else os.fsencode(TMP_SUFFIX)

    with _SigintGuard() as guard:
        tmp = file = None
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
            file = os.fdopen(fd, "wb")
            _set_permissions(fd, mode, replaced)
            _write_archive(file, meta, arrays, guard)
            with guard.interruptible():
                file.flush()
                os.fsync(fd)
            file.close()
            os.replace(tmp, target)
            tmp = None
            _fsync_directory(folder)
        except BaseException:
            _discard(file, tmp)
            raise


class _SigintGuard:
    """Ctrl-C handling for one save, in the main thread (the only one Python interrupts).

    Inside :meth:`interruptible` blocks (the long writing of data) Ctrl-C goes to the SIGINT
    handler at once (by default it raises KeyboardInterrupt). Everywhere else (creating the
    temporary file and remembering its name, the rename, the cleanup) it is recorded and handed
    to the handler on entering the next interruptible block or on leaving the guard, so that none
    of these steps is cut in half; and once the handler has raised, a second Ctrl-C cannot stop
    the cleanup that follows. SIG_IGN and SIG_DFL are left alone: there is nothing to defer.
    """

    def __init__(self):
        self._previous = signal.getsignal(signal.SIGINT)
        self._active = (threading.current_thread() is threading.main_thread()
                        and callable(self._previous))
        self._allowed = False
        self._pending = False

    def __enter__(self):
        if self._active:
            signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum, frame):
        if not self._allowed:
            self._pending = True
            return
        self._allowed = False
        self._previous(signum, frame)
        self._allowed = True  # the handler did not raise: writing goes on

    @contextlib.contextmanager
    def interruptible(self):
        if self._pending:
            self._pending = False
            self._previous(signal.SIGINT, None)
        self._allowed = True
        try:
            yield
        finally:
            self._allowed = False

    def __exit__(self, exc_type, exc, tb):
        if not self._active:
            return
        signal.signal(signal.SIGINT, self._previous)
        already_interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        if self._pending and not already_interrupted:
            self._previous(signal.SIGINT, None)


def _resolve_target(path):
    """The regular file `path` names, with symlinks followed, and its stat (None if absent)."""
    shown = os.fsdecode(path)
    if shown.endswith(os.sep):
        raise IsADirectoryError(errno.EISDIR, "save writes a file, not a directory", shown)
    target = os.path.realpath(path)
    try:
        existing = os.stat(target)
    except FileNotFoundError:
        # named here, as the user wrote it: the temporary file beside it could not be made
        if not os.path.isdir(os.path.dirname(target)):
            raise FileNotFoundError(errno.ENOENT, "the directory to save in does not exist",
                                    shown) from None
        return target, None
    if stat.S_ISDIR(existing.st_mode):
        raise IsADirectoryError(errno.EISDIR, "save writes a file, not a directory", shown)
    if not stat.S_ISREG(existing.st_mode):
        raise ValueError(f"{shown}: is a FIFO, socket or device; save writes regular files only")
    return target, existing


def _new_file_mode() -> int:
    """0o666 less the umask: the mode open() would give a new file."""
    try:
        # Linux 4.7+ reports the umask here, which reads it without changing it.
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # Elsewhere the only way is to set it and put it back; a file another thread creates in
    # between gets the temporary umask, which is why it is the usual 0o022.
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _set_permissions(fd: int, mode: int, replaced) -> None:
    if replaced is not None:
        ours = os.fstat(fd)
        if (ours.st_uid, ours.st_gid) != (replaced.st_uid, replaced.st_gid):
            # Best effort: only root may give a file away, but an owner may give it to any group
            # it belongs to.
            try:
                os.fchown(fd, replaced.st_uid, replaced.st_gid)
            except PermissionError:
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, -1, replaced.st_gid)
    try:
        os.fchmod(fd, mode)  # after fchown, which may clear the set-id bits
    except OSError as exc:
        # Filesystems without Unix modes (FAT, some network shares) refuse; the file keeps
        # whatever mode they give every file.
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise


def _write_archive(file, meta: bytes, arrays, guard: _SigintGuard) -> None:
    """The zip archive, with each array streamed into its member rather than copied first.

    Only the array data is written interruptibly: zipfile's own bookkeeping (opening and closing
    members, the central directory) is never cut in half, so a failed archive can always be
    closed, which it must be before being dropped (ZipFile.close and __del__ raise while a member
    is open for writing)."""
    archive = zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED)
    member = None
    try:
        archive.writestr(META, meta)
        for name, array in arrays:
            member = archive.open(name, "w", force_zip64=True)
            with guard.interruptible():
                np.lib.format.write_array(member, array, allow_pickle=False)
            member.close()
        archive.close()
    except BaseException:
        for handle in (member, archive):
            if handle is not None:
                # The archive is being thrown away; the caller needs the error that got us here,
                # not what the half-written archive fails with while closing.
                with contextlib.suppress(Exception):
                    handle.close()
        raise


def _discard(file, tmp) -> None:
    if file is not None:
        with contextlib.suppress(OSError):  # flushing data that is being thrown away
            file.close()
    if tmp is not None:
        # If even this fails (a read-only remount, say), the error that got us here still
        # matters more to the caller.
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _fsync_directory(folder) -> None:
    """Make the rename itself durable."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems cannot fsync a directory; there the rename is as durable as they make it.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


# -- loading ------------------------------------------------------------------------------------

class _Refused(Exception):
    """Something wrong in a file; load() reports it as a ValueError naming the file."""


def load(path) -> Network:
    """Read a network written by :func:`save`. Raises ValueError for any damaged or foreign file."""
    return _read_file(path, _from_archive)


def load_population(path) -> Population:
    """Read a population written by :func:`save_population` (ValueError for any damaged or
    foreign file)."""
    return _read_file(path, _population_from_archive)


def _read_file(path, reader):
    path = _path(path)
    shown = os.fsdecode(path)
    try:
        with _open_regular_file(path, shown) as file:
            with zipfile.ZipFile(file) as archive:
                return reader(archive, os.fstat(file.fileno()).st_size)
    except _Refused as exc:
        raise ValueError(f"{shown}: {exc}") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        # What zipfile raises for damage the checks below cannot see beforehand: a bad checksum,
        # a mangled central directory, a name that is not UTF-8, a zip version it cannot read...
        raise ValueError(f"{shown}: not a bpfast file, or it is truncated or corrupted "
                         f"({type(exc).__name__}: {exc})") from None


def _open_regular_file(path, shown):
    # O_NONBLOCK: opening a FIFO would otherwise wait for a writer. It changes nothing for
    # regular files.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        kind = os.fstat(fd).st_mode
        if stat.S_ISDIR(kind):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), shown)
        if not stat.S_ISREG(kind):
            raise _Refused("is a FIFO, socket or device, not a bpfast file")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _member(archive, name, archive_size) -> zipfile.ZipInfo:
    """The member `name`, checked to be stored, unencrypted and within the file."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise _Refused(f"not a {'bpfast' if name == META else 'complete bpfast'} file "
                       f"(no {name})") from None
    if info.flag_bits & UNREADABLE_FLAGS:
        raise _Refused(f"{name} is encrypted; bpfast never encrypts its files")
    if info.compress_type != zipfile.ZIP_STORED:
        raise _Refused(f"{name} is compressed (zip method {info.compress_type}); bpfast files "
                       "store their members uncompressed")
    if info.file_size != info.compress_size or \
            info.header_offset + info.compress_size > archive_size:
        raise _Refused(f"{name} declares {info.file_size:,} bytes, which the file "
                       f"({archive_size:,} bytes) cannot hold")
    return info


def _invalid(what: str) -> _Refused:
    return _Refused(f"invalid network description in {META}: {what}")


def _meta(archive, archive_size, kind: str, newest: int) -> tuple[dict, int]:
    """The archive's metadata, checked to be of format `kind` in a version this bpfast reads."""
    meta_info = _member(archive, META, archive_size)
    try:
        meta = json.loads(archive.read(meta_info).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError also covers integers longer than Python converts (sys.get_int_max_str_digits).
        raise _Refused(f"{META} is not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, POPULATION_FORMAT):
        raise _Refused(f"not a bpfast {'network' if kind == FORMAT else 'population'} file")
    if meta["format"] != kind:
        found, wanted = ("network", "population") if kind == POPULATION_FORMAT else \
            ("population", "network")
        reader = "bpfast.load" if found == "network" else "bpfast.Population.load"
        raise _Refused(f"holds a {found}, not a {wanted}: read it with {reader}")
    version = meta.get("format_version")
    if type(version) is not int or version < 1:
        raise _Refused(f"invalid format_version {reprlib.repr(version)}")
    if version > newest:
        raise _Refused(f"written in format version {reprlib.repr(version)} by bpfast "
                       f"{reprlib.repr(meta.get('bpfast_version'))}; this bpfast ({__version__}) "
                       f"reads up to version {newest}. Upgrade bpfast to load it.")
    return meta, version


def _from_archive(archive, archive_size) -> Network:
    meta, version = _meta(archive, archive_size, FORMAT, FORMAT_VERSION)
    topology = _topology(meta)
    dtype_name = meta.get("dtype")
    if not isinstance(dtype_name, str) or dtype_name not in DTYPES:
        raise _invalid(f"dtype must be one of {sorted(DTYPES)}, got {reprlib.repr(dtype_name)}")
    dtype = np.dtype(DTYPES[dtype_name])
    try:
        n_params = check_int("n_params", _field(meta, "n_params"), low=0)
        seed = check_int("seed", _field(meta, "seed"), low=0)
        init_range = check_real("init_range", _field(meta, "init_range"), low=0)
        shuffle_state = check_int("shuffle_state", _field(meta, "shuffle_state"),
                                  low=0, high=2**64 - 1)
    except (TypeError, ValueError) as exc:
        raise _invalid(str(exc)) from None
    if n_params != topology.n_params:
        raise _invalid(f"n_params {n_params} does not match the architecture's "
                       f"{topology.n_params}")
    optimizer = meta.get("optimizer", "momentum") if version >= 2 else "momentum"
    if optimizer not in OPTIMIZERS:
        raise _invalid(f"optimizer must be one of {sorted(OPTIMIZERS)}, got "
                       f"{reprlib.repr(optimizer)}")
    init = meta.get("init", "uniform")
    if init not in INITS:
        raise _invalid(f"init must be one of {sorted(INITS)}, got {reprlib.repr(init)}")
    rng_state = _rng_state(meta)
    params = _read_array(archive, _member(archive, PARAMS, archive_size), dtype, n_params)
    velocity = _read_array(archive, _member(archive, VELOCITY, archive_size), dtype,
                           state_length(optimizer, n_params))
    state = {"topology": topology.describe(), "dtype": dtype.name,
             "init_range": init_range, "seed": seed, "rng": rng_state,
             "params": params, "velocity": velocity, "shuffle_state": shuffle_state,
             "optimizer": optimizer, "init": init}
    recurrent = meta.get("recurrent") if version >= 3 else None
    if recurrent is None:
        net = Network.__new__(Network)
    else:
        fields = ("n_inputs", "n_hidden", "n_outputs", "n_steps", "output_feedback",
                  "activation", "output_activation", "bias", "gradient")
        if not isinstance(recurrent, dict) or sorted(recurrent) != sorted(fields):
            raise _invalid(f"recurrent must be an object with exactly the fields {list(fields)}, "
                           f"got {reprlib.repr(recurrent)}")
        net = RecurrentNetwork.__new__(RecurrentNetwork)
        state["recurrent"] = recurrent
    try:
        net.__setstate__(state)
    except (TypeError, ValueError) as exc:
        raise _invalid(str(exc)) from None
    return net


def _population_from_archive(archive, archive_size) -> Population:
    meta, _ = _meta(archive, archive_size, POPULATION_FORMAT, POPULATION_FORMAT_VERSION)
    topology = _topology(meta)
    names = {}
    for name, allowed in (("dtype", DTYPES), ("optimizer", OPTIMIZERS), ("init", INITS)):
        value = meta.get(name)
        if not isinstance(value, str) or value not in allowed:
            raise _invalid(f"{name} must be one of {sorted(allowed)}, got {reprlib.repr(value)}")
        names[name] = value
    dtype, optimizer, init = np.dtype(DTYPES[names["dtype"]]), names["optimizer"], names["init"]
    try:
        n_members = check_int("n_members", _field(meta, "n_members"), low=1)
        n_params = check_int("n_params", _field(meta, "n_params"), low=0)
        lists = {key: _field(meta, key) for key in ("seeds", "init_range", "shuffle_state")}
        for key, values in lists.items():
            if not isinstance(values, list) or len(values) != n_members:
                raise ValueError(f"{key} must be a list of {n_members} values, got "
                                 f"{reprlib.repr(values)}")
        seeds = [check_int("seeds[i]", s, low=0) for s in lists["seeds"]]
        ranges = [check_real("init_range[i]", r, low=0) for r in lists["init_range"]]
        shuffle = [check_int("shuffle_state[i]", s, low=0, high=2**64 - 1)
                   for s in lists["shuffle_state"]]
    except (TypeError, ValueError) as exc:
        raise _invalid(str(exc)) from None
    if n_params != topology.n_params:
        raise _invalid(f"n_params {n_params} does not match the architecture's "
                       f"{topology.n_params}")
    state = state_length(optimizer, n_params)
    params = _read_array(archive, _member(archive, PARAMS, archive_size), dtype,
                         n_members * n_params, (n_members, n_params))
    velocity = _read_array(archive, _member(archive, VELOCITY, archive_size), dtype,
                           n_members * state, (n_members, state))
    pop = Population.__new__(Population)
    pop.__setstate__({"topology": topology.describe(), "dtype": dtype.name, "init": init,
                      "init_range": ranges, "seeds": seeds, "params": params,
                      "velocity": velocity, "shuffle_state": shuffle, "optimizer": optimizer})
    return pop


def _field(meta: dict, key: str):
    if key not in meta:
        raise ValueError(f"{key} is missing")
    return meta[key]


def _topology(meta: dict) -> Topology:
    """The architecture, each field's type checked before Layer and Topology check its value."""
    topo = meta.get("topology")
    if not isinstance(topo, dict):
        raise _invalid(f"topology must be an object, got {reprlib.repr(topo)}")
    inputs, layers = topo.get("inputs"), topo.get("layers")
    if not isinstance(inputs, dict) or not all(type(v) is int for v in inputs.values()):
        raise _invalid(f"topology.inputs must map group names to integer sizes, got "
                       f"{reprlib.repr(inputs)}")
    if not isinstance(layers, list):
        raise _invalid(f"topology.layers must be a list, got {reprlib.repr(layers)}")
    types = {"name": (str, "a string"), "size": (int, "an integer"), "sources": (list, "a list"),
             "activation": (str, "a string"), "bias": (bool, "true or false")}
    specs = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or sorted(layer) != sorted(LAYER_FIELDS):
            raise _invalid(f"topology.layers[{i}] must be an object with exactly the fields "
                           f"{list(LAYER_FIELDS)}, got {reprlib.repr(layer)}")
        for key, (kind, described) in types.items():
            if type(layer[key]) is not kind:
                raise _invalid(f"topology.layers[{i}].{key} must be {described}, got "
                               f"{reprlib.repr(layer[key])}")
        if not all(isinstance(source, str) for source in layer["sources"]):
            raise _invalid(f"topology.layers[{i}].sources must be a list of names, got "
                           f"{reprlib.repr(layer['sources'])}")
        try:
            specs.append(Layer(**layer))
        except (TypeError, ValueError) as exc:
            raise _invalid(f"topology.layers[{i}]: {exc}") from None
    ties = []
    for i, tie in enumerate(topo.get("ties", [])):
        if not isinstance(tie, dict) or sorted(tie) != sorted(TIE_FIELDS):
            raise _invalid(f"topology.ties[{i}] must be an object with exactly the fields "
                           f"{list(TIE_FIELDS)}, got {reprlib.repr(tie)}")
        index = tie["index"]
        if index is not None and not _int_lists(index):
            raise _invalid(f"topology.ties[{i}].index must be null or lists of lists of "
                           f"integers, got {reprlib.repr(index)}")
        try:
            ties.append(Tie(weights=tie["weights"], biases=tie["biases"],
                            index=None if index is None
                            else [np.array(m, dtype=np.int64) for m in index],
                            gradient=tie["gradient"]))
        except (TypeError, ValueError, OverflowError) as exc:
            raise _invalid(f"topology.ties[{i}]: {exc}") from None
    try:
        return Topology(inputs, specs, ties)
    except (TypeError, ValueError) as exc:
        raise _invalid(f"topology: {exc}") from None


def _int_lists(index) -> bool:
    """Whether `index` is a list of (nested) lists whose leaves are all integers."""
    if not isinstance(index, list):
        return False
    stack = list(index)
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif type(item) is not int:
            return False
    return True


def _rng_state(meta: dict) -> dict:
    """The saved state of the network's PCG64 generator, checked field by field (numpy accepts
    some out-of-range values silently and reports others with an unnamed OverflowError)."""
    state = meta.get("rng_state")
    if not isinstance(state, dict) or state.get("bit_generator") != "PCG64" or \
            not isinstance(state.get("state"), dict):
        raise _invalid(f"rng_state must be a numpy PCG64 state, got {reprlib.repr(state)}")
    try:
        # Two 128-bit integers, and a buffered 32-bit half of a 64-bit draw.
        for key in ("state", "inc"):
            check_int(f"rng_state.state.{key}", _field(state["state"], key),
                      low=0, high=2**128 - 1)
        check_int("rng_state.has_uint32", _field(state, "has_uint32"), low=0, high=1)
        check_int("rng_state.uinteger", _field(state, "uinteger"), low=0, high=2**32 - 1)
        np.random.PCG64().state = state  # type: ignore[assignment]  # checked field by field above
    except (TypeError, ValueError) as exc:
        raise _invalid(str(exc)) from None
    return state


def _read_array(archive, info, dtype, n, shape=None) -> np.ndarray:
    """A (n,) array of `dtype` (or of `shape`, n values) from a .npy member, refused before
    anything is allocated unless the header says exactly that and the member holds exactly that
    many bytes."""
    shape = (n,) if shape is None else shape
    name = info.filename
    with archive.open(info) as member:
        magic = member.read(np.lib.format.MAGIC_LEN)
        try:
            version = np.lib.format.read_magic(io.BytesIO(magic))
        except ValueError as exc:
            raise _Refused(f"{name} is not a plain numeric array ({exc})") from None
        if version not in ((1, 0), (2, 0)):
            raise _Refused(f"{name} is not a plain numeric array (.npy format {version}, "
                           "bpfast writes 1.0)")
        length_field = member.read(2 if version == (1, 0) else 4)
        header_length = int.from_bytes(length_field, "little")
        header_end = len(magic) + len(length_field) + header_length
        if header_length > MAX_NPY_HEADER or header_end > info.file_size:
            raise _Refused(f"{name} has a damaged header (declared {header_length:,} bytes)")
        header = io.BytesIO(length_field + member.read(header_length))
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        try:
            file_shape, fortran_order, file_dtype = read_header(header)
        except (ValueError, SyntaxError, RecursionError, MemoryError, tokenize.TokenError) as exc:
            # The header is a Python literal of at most MAX_NPY_HEADER bytes; Python's parser
            # reports a pathological one as MemoryError ("parser stack overflowed") or
            # RecursionError, not from a large allocation.
            raise _Refused(f"{name} is not a plain numeric array (unreadable header: "
                           f"{type(exc).__name__}: {reprlib.repr(str(exc))})") from None
        if file_dtype.hasobject or file_dtype.kind not in "biufc":
            raise _Refused(f"{name} is not a plain numeric array (dtype {file_dtype})")
        if fortran_order:
            raise _Refused(f"{name} is stored in Fortran order; bpfast writes C order")
        if file_dtype != dtype or file_shape != shape:
            raise _Refused(f"{name} has dtype {file_dtype} and shape "
                           f"{reprlib.repr(file_shape)}; the architecture needs {dtype.name} of "
                           f"shape {shape}")
        n_bytes = n * dtype.itemsize
        if info.file_size != header_end + n_bytes:
            raise _Refused(f"{name} holds {info.file_size - header_end:,} bytes of data; "
                           f"{n:,} {dtype.name} values need {n_bytes:,}")
        data = member.read(n_bytes)  # reading to the end checks the member's CRC
    if len(data) != n_bytes:
        raise _Refused(f"{name} is truncated")
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if not np.isfinite(array).all():
        raise _Refused(f"{name} contains NaN or infinite values")
    return array
