# cython: language_level=3
"""The compiled driver: thin typed wrappers around csrc/ that release the GIL.

It validates nothing (bpfast.network does): arrays arrive C-contiguous, finite and of one dtype,
shapes already checked. The public functions here have the same names and signatures as their
float64 oracles in bpfast.reference, and a test keeps them so.
"""

from libc.stdint cimport int64_t, uint64_t
from cython cimport floating
from cpython.exc cimport PyErr_CheckSignals

import os
import time

import numpy as np

cdef extern from "bpfast.h" nogil:
    ctypedef struct bp_net:
        int n_layers
        int n_inputs
        int n_input_cols
        const int *size
        const int *activation
        const int64_t *bias_offset
        const int *input_col
        const int *src_start
        const int *src_layer
        const int64_t *w_offset
        const int *accumulate
        int64_t n_params

    ctypedef struct bp_train_config:
        int64_t n_samples
        int64_t batch_size
        int shuffle
        int loss
        double dead_zone_off
        double dead_zone_on
        double stop_tol
        int n_threads

    ctypedef struct bp_phase:
        double lr
        double momentum
        double weight_decay
        int64_t n_decayed

    enum: BP_SSE, BP_DEAD_ZONE, BP_RUNNING, BP_SOLVED, BP_NON_FINITE

    ctypedef struct bp_workspace_f32
    ctypedef struct bp_workspace_f64
    bp_workspace_f32 *bp_workspace_create_f32(const bp_net *net, int64_t max_rows, int64_t n_samples,
                                              int for_training)
    bp_workspace_f64 *bp_workspace_create_f64(const bp_net *net, int64_t max_rows, int64_t n_samples,
                                              int for_training)
    void bp_workspace_free_f32(bp_workspace_f32 *ws)
    void bp_workspace_free_f64(bp_workspace_f64 *ws)
    const float *bp_workspace_activations_f32(const bp_workspace_f32 *ws, int l, int64_t *ld)
    const double *bp_workspace_activations_f64(const bp_workspace_f64 *ws, int l, int64_t *ld)

    ctypedef struct bp_kernels:
        const char *name
        void (*forward_f32)(const bp_net *net, bp_workspace_f32 *ws, const float *params,
                            const float *X, int64_t n_rows, int n_threads) noexcept nogil
        void (*forward_f64)(const bp_net *net, bp_workspace_f64 *ws, const double *params,
                            const double *X, int64_t n_rows, int n_threads) noexcept nogil
        double (*loss_gradient_f32)(const bp_net *net, bp_workspace_f32 *ws, float *grad,
                                    const float *params, const float *X, const float *T,
                                    int64_t n_rows, const bp_train_config *cfg, int *all_within) noexcept nogil
        double (*loss_gradient_f64)(const bp_net *net, bp_workspace_f64 *ws, double *grad,
                                    const double *params, const double *X, const double *T,
                                    int64_t n_rows, const bp_train_config *cfg, int *all_within) noexcept nogil
        void (*momentum_update_f32)(float *params, float *velocity, const float *grad,
                                    int64_t n_params, const bp_phase *phase, int n_threads) noexcept nogil
        void (*momentum_update_f64)(double *params, double *velocity, const double *grad,
                                    int64_t n_params, const bp_phase *phase, int n_threads) noexcept nogil
        int64_t (*train_f32)(const bp_net *net, bp_workspace_f32 *ws, float *params,
                             float *velocity, float *grad, const float *X, const float *T,
                             const bp_train_config *cfg, const bp_phase *phase, int64_t n_sweeps,
                             uint64_t *rng_state, double *errors, int *status) noexcept nogil
        int64_t (*train_f64)(const bp_net *net, bp_workspace_f64 *ws, double *params,
                             double *velocity, double *grad, const double *X, const double *T,
                             const bp_train_config *cfg, const bp_phase *phase, int64_t n_sweeps,
                             uint64_t *rng_state, double *errors, int *status) noexcept nogil
        double (*evaluate_f32)(const bp_net *net, bp_workspace_f32 *ws, const float *params,
                               const float *X, const float *T, const bp_train_config *cfg,
                               int *all_within) noexcept nogil
        double (*evaluate_f64)(const bp_net *net, bp_workspace_f64 *ws, const double *params,
                               const double *X, const double *T, const bp_train_config *cfg,
                               int *all_within) noexcept nogil
        void (*logistic_f32)(float *x, int64_t n) noexcept nogil
        void (*logistic_f64)(double *x, int64_t n) noexcept nogil

    const bp_kernels *bp_kernels_named(const char *name)
    int bp_openmp_enabled()
    int bp_openmp_max_threads()

cdef extern from *:
    """
    #ifndef BPFAST_CFLAGS
    #define BPFAST_CFLAGS "unknown"
    #endif
    """
    const char *BPFAST_CFLAGS

# The kernel variant in use: the best this CPU supports, or BPFAST_ISA (set at the end of import).
cdef const bp_kernels *KERNELS = bp_kernels_named(NULL)

LOSSES = {"sse": BP_SSE, "dead_zone": BP_DEAD_ZONE}
STATUS_NAMES = {BP_RUNNING: "max_sweeps", BP_SOLVED: "solved", BP_NON_FINITE: "non_finite"}

# Rows per workspace when a forward pass runs over many cases: bounds the memory of predict().
FORWARD_CHUNK_ROWS = 8192


def workspace_rows(batch_size, n_samples):
    """Rows of the workspace a training run allocates: a batch, and at least a forward chunk
    (or all cases) so that evaluating every case does not go a tiny batch at a time."""
    return max(batch_size, min(n_samples, FORWARD_CHUNK_ROWS))
# Sweeps per compiled call grow by doubling while calls are short; this caps the doubling.
MAX_CHUNK_SWEEPS = 1 << 20
# Seconds between the snapshots that a diverged run is restored from (tests set it to 0).
SNAPSHOT_SECONDS = 1.0


cdef class CompiledTopology:
    """A Topology's tables as the C struct; keeps the arrays it points into alive."""
    cdef bp_net net
    cdef object arrays

    def __cinit__(self, topology):
        cdef const int[::1] size = topology.size
        cdef const int[::1] activation = topology.activation
        cdef const int64_t[::1] bias_offset = topology.bias_offset
        cdef const int[::1] input_col = topology.input_col
        cdef const int[::1] src_start = topology.src_start
        cdef const int[::1] src_layer = topology.src_layer
        cdef const int64_t[::1] w_offset = topology.w_offset
        cdef const int[::1] accumulate = topology.accumulate
        self.arrays = (size, activation, bias_offset, input_col, src_start, src_layer,
                       w_offset, accumulate)
        self.net.n_layers = topology.n_layers
        self.net.n_inputs = topology.n_inputs
        self.net.n_input_cols = topology.n_input_cols
        self.net.size = &size[0]
        self.net.activation = &activation[0]
        self.net.bias_offset = &bias_offset[0]
        self.net.input_col = &input_col[0]
        self.net.src_start = &src_start[0]
        self.net.src_layer = &src_layer[0]
        self.net.w_offset = &w_offset[0]
        self.net.accumulate = &accumulate[0]
        self.net.n_params = topology.n_params


cdef CompiledTopology _compiled(topology):
    if topology._compiled is None:
        topology._compiled = CompiledTopology(topology)
    return topology._compiled


cdef bp_train_config _config(int64_t n_samples, int64_t batch_size, bint shuffle, str loss,
                             dead_zone, stop_tol, int n_threads) except *:
    cdef bp_train_config cfg
    cfg.n_samples = n_samples
    cfg.batch_size = batch_size
    cfg.shuffle = shuffle
    cfg.loss = LOSSES[loss]
    cfg.dead_zone_off = dead_zone[0]
    cfg.dead_zone_on = dead_zone[1]
    cfg.stop_tol = stop_tol if stop_tol is not None else 0.0
    cfg.n_threads = n_threads
    return cfg


cdef void *_workspace(floating *kind, const bp_net *net, int64_t max_rows,
                      int64_t n_samples, bint for_training) except NULL:
    cdef void *ws
    if floating is float:
        ws = bp_workspace_create_f32(net, max_rows, n_samples, for_training)
    else:
        ws = bp_workspace_create_f64(net, max_rows, n_samples, for_training)
    if ws == NULL:
        raise MemoryError(f"bpfast could not allocate buffers for batches of {max_rows} rows")
    return ws


cdef void _free_workspace(floating *kind, void *ws) noexcept:
    if floating is float:
        bp_workspace_free_f32(<bp_workspace_f32 *>ws)
    else:
        bp_workspace_free_f64(<bp_workspace_f64 *>ws)


def forward(topology, params, X, *, all_layers=False, n_threads=1):
    """Activations of every layer (a list, inputs first) or of the output layer only."""
    return _forward(topology, params, X, all_layers, n_threads)


def _forward(topology, const floating[::1] params, const floating[:, ::1] X, bint all_layers,
             int n_threads):
    cdef CompiledTopology compiled = _compiled(topology)
    cdef const bp_net *net = &compiled.net
    cdef int64_t n = X.shape[0], start, rows, ld, r, c
    cdef int l
    cdef floating *kind = NULL
    cdef int64_t chunk = min(max(n, 1), FORWARD_CHUNK_ROWS)
    dtype = np.float32 if floating is float else np.float64
    Xa = np.asarray(X)
    first = 0 if all_layers else topology.n_layers - 1
    outs = [np.empty((n, topology.size[l]), dtype=dtype)
            for l in range(max(first, topology.n_inputs), topology.n_layers)]
    cdef floating[:, ::1] out
    cdef const floating *act
    cdef void *ws = _workspace(kind, net, chunk, 0, False)
    try:
        for start in range(0, n, chunk):
            rows = min(chunk, n - start)
            with nogil:
                if floating is float:
                    KERNELS.forward_f32(net, <bp_workspace_f32 *>ws, &params[0], &X[start, 0], rows,
                                   n_threads)
                else:
                    KERNELS.forward_f64(net, <bp_workspace_f64 *>ws, &params[0], &X[start, 0], rows,
                                   n_threads)
            for i, l in enumerate(range(max(first, topology.n_inputs), topology.n_layers)):
                out = outs[i]
                if floating is float:
                    act = bp_workspace_activations_f32(<bp_workspace_f32 *>ws, l, &ld)
                else:
                    act = bp_workspace_activations_f64(<bp_workspace_f64 *>ws, l, &ld)
                for r in range(rows):  # feature-major (units, ld) back to (cases, units)
                    for c in range(out.shape[1]):
                        out[start + r, c] = act[c * ld + r]
    finally:
        _free_workspace(kind, ws)
    if not all_layers:
        return outs[-1]
    cols = topology.input_col
    return [Xa[:, cols[i]:cols[i] + topology.size[i]] for i in range(topology.n_inputs)] + outs


def loss_gradient(topology, params, X, T, *, loss="sse", dead_zone=(0.2, 0.8), n_threads=1):
    """(E, dE/dparams) over all rows of X: E = 1/2 sum (y - d)^2, the gradient summed over rows."""
    return _loss_gradient(topology, params, X, T, loss, dead_zone, n_threads)


def _loss_gradient(topology, const floating[::1] params, const floating[:, ::1] X,
                   const floating[:, ::1] T, str loss, dead_zone, int n_threads):
    cdef CompiledTopology compiled = _compiled(topology)
    cdef const bp_net *net = &compiled.net
    cdef int64_t n = X.shape[0]
    cdef bp_train_config cfg = _config(n, n, False, loss, dead_zone, None, n_threads)
    cdef floating *kind = NULL
    cdef int all_within
    cdef double error
    grad_array = np.empty(topology.n_params, dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] grad = grad_array
    cdef void *ws = _workspace(kind, net, n, 0, True)
    try:
        with nogil:
            if floating is float:
                error = KERNELS.loss_gradient_f32(net, <bp_workspace_f32 *>ws, &grad[0], &params[0],
                                             &X[0, 0], &T[0, 0], n, &cfg, &all_within)
            else:
                error = KERNELS.loss_gradient_f64(net, <bp_workspace_f64 *>ws, &grad[0], &params[0],
                                             &X[0, 0], &T[0, 0], n, &cfg, &all_within)
    finally:
        _free_workspace(kind, ws)
    return error, grad_array


def evaluate(topology, params, X, T, *, loss="sse", dead_zone=(0.2, 0.8), stop_tol=None,
             n_threads=1):
    """(E, all_within) of the weights over every row of X, without gradients: E = 1/2 sum
    (y - d)^2, all_within whether every output is within stop_tol of its target."""
    return _evaluate(topology, params, X, T, loss, dead_zone, stop_tol, n_threads)


def _evaluate(topology, const floating[::1] params, const floating[:, ::1] X,
              const floating[:, ::1] T, str loss, dead_zone, stop_tol, int n_threads):
    cdef CompiledTopology compiled = _compiled(topology)
    cdef const bp_net *net = &compiled.net
    cdef int64_t n = X.shape[0]
    cdef bp_train_config cfg = _config(n, n, False, loss, dead_zone, stop_tol, n_threads)
    cdef floating *kind = NULL
    cdef int all_within
    cdef double error
    cdef void *ws = _workspace(kind, net, <int64_t>min(n, FORWARD_CHUNK_ROWS), 0, False)
    try:
        with nogil:
            if floating is float:
                error = KERNELS.evaluate_f32(net, <bp_workspace_f32 *>ws, &params[0], &X[0, 0],
                                             &T[0, 0], &cfg, &all_within)
            else:
                error = KERNELS.evaluate_f64(net, <bp_workspace_f64 *>ws, &params[0], &X[0, 0],
                                             &T[0, 0], &cfg, &all_within)
    finally:
        _free_workspace(kind, ws)
    return error, bool(all_within)


def momentum_update(params, velocity, grad, *, lr, momentum, weight_decay=0.0, n_decayed=0,
                    n_threads=1):
    """In place: v = momentum v - lr grad; w += v; w *= 1 - weight_decay for w[:n_decayed]."""
    _momentum_update(params, velocity, grad, lr, momentum, weight_decay, n_decayed, n_threads)


def _momentum_update(floating[::1] params, floating[::1] velocity, const floating[::1] grad,
                     double lr, double momentum, double weight_decay, int64_t n_decayed,
                     int n_threads):
    cdef bp_phase phase
    phase.lr, phase.momentum, phase.weight_decay, phase.n_decayed = lr, momentum, weight_decay, n_decayed
    with nogil:
        if floating is float:
            KERNELS.momentum_update_f32(&params[0], &velocity[0], &grad[0], params.shape[0],
                                        &phase, n_threads)
        else:
            KERNELS.momentum_update_f64(&params[0], &velocity[0], &grad[0], params.shape[0],
                                        &phase, n_threads)


def train(topology, params, velocity, X, T, phases, *, batch_size, shuffle=True, loss="sse",
          dead_zone=(0.2, 0.8), stop_tol=None, rng_state=0, callback=None, callback_every=0,
          n_threads=1):
    """Run every phase of a schedule; return (errors, n_sweeps, status, final_error, all_within,
    rng_state).

    `phases` is a sequence of (n_sweeps, lr, momentum, weight_decay, n_decayed). The sweeps run in
    compiled code with the GIL released, in chunks: between chunks Python checks for signals
    (Ctrl-C raises KeyboardInterrupt with the weights of the last finished sweep) and, every
    `callback_every` sweeps, calls ``callback(sweep, error)``; a true return value stops training.
    Chunks grow until each takes a few tens of milliseconds; their size never changes the result.
    If the error becomes NaN or infinite, the weights, velocities and generator go back to the
    start of the last sweep whose error was finite, and the status is "non_finite".
    `rng_state` (the shuffling generator) is an int, or a 1-element uint64 array that receives the
    final state even when training is interrupted.
    """
    return _train(topology, params, velocity, X, T, phases, batch_size, shuffle, loss, dead_zone,
                  stop_tol, rng_state, callback, callback_every, n_threads)


def _train(topology, floating[::1] params, floating[::1] velocity, const floating[:, ::1] X,
           const floating[:, ::1] T, phases, int64_t batch_size, bint shuffle, str loss,
           dead_zone, stop_tol, rng_state, callback, int64_t callback_every, int n_threads):
    cdef CompiledTopology compiled = _compiled(topology)
    cdef const bp_net *net = &compiled.net
    cdef int64_t n = X.shape[0]
    cdef bp_train_config cfg = _config(n, min(batch_size, n), shuffle, loss, dead_zone, stop_tol,
                                       n_threads)
    cdef floating *kind = NULL
    cdef int64_t total = sum(int(p[0]) for p in phases)
    cdef int64_t done = 0, ran, chunk, adaptive = 1, remaining, target
    cdef int status = BP_RUNNING, all_within = 0
    # rng_state: an int, or a 1-element uint64 array that gets the final state even if training
    # is interrupted (Ctrl-C, an exception from the callback).
    holder = rng_state if isinstance(rng_state, np.ndarray) else None
    cdef uint64_t state = int(holder[0]) if holder is not None else rng_state
    cdef double final_error
    errors_array = np.zeros(max(total, 1), dtype=np.float64)
    cdef double[::1] errors = errors_array
    grad_array = np.empty(topology.n_params, dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] grad = grad_array
    params_array, velocity_array = np.asarray(params), np.asarray(velocity)
    stopped_by_callback = False
    # Where to come back to if the numbers blow up: (sweeps done, params, velocity, rng state),
    # taken at chunk starts at most once a second; the last two are kept.
    snapshots = [(0, params_array.copy(), velocity_array.copy(), state)]
    snapshot_time = time.perf_counter()
    # Room for training batches, and for evaluating every case in chunks bigger than tiny batches.
    cdef void *ws = _workspace(kind, net, <int64_t>workspace_rows(cfg.batch_size, n),
                               n if shuffle and cfg.batch_size < n else 0, True)

    def run(int64_t index, int64_t count, double[::1] errors_out):
        """`count` sweeps of phase `index` from the current state; returns (sweeps run, status)."""
        nonlocal state
        cdef bp_phase ph
        cdef int64_t ran_
        cdef int status_ = BP_RUNNING
        ph.lr, ph.momentum, ph.weight_decay, ph.n_decayed = phases[index][1:]
        with nogil:
            if floating is float:
                ran_ = KERNELS.train_f32(net, <bp_workspace_f32 *>ws, &params[0], &velocity[0],
                                         &grad[0], &X[0, 0], &T[0, 0], &cfg, &ph, count, &state,
                                         &errors_out[0], &status_)
            else:
                ran_ = KERNELS.train_f64(net, <bp_workspace_f64 *>ws, &params[0], &velocity[0],
                                         &grad[0], &X[0, 0], &T[0, 0], &cfg, &ph, count, &state,
                                         &errors_out[0], &status_)
        return ran_, status_

    try:
        for index in range(len(phases)):
            remaining = phases[index][0]
            while remaining > 0 and status == BP_RUNNING and not stopped_by_callback:
                chunk = min(remaining, adaptive)
                if callback is not None and callback_every > 0:
                    chunk = min(chunk, callback_every - done % callback_every)
                started = time.perf_counter()
                if started - snapshot_time >= SNAPSHOT_SECONDS:
                    snapshots = [snapshots[-1], (done, params_array.copy(),
                                                 velocity_array.copy(), state)]
                    snapshot_time = started
                ran, status = run(index, chunk, errors[done:])
                done += ran
                remaining -= ran
                elapsed = time.perf_counter() - started
                if elapsed < 0.02 and chunk == adaptive and adaptive < MAX_CHUNK_SWEEPS:
                    adaptive *= 2
                elif elapsed > 0.1 and adaptive > 1:
                    adaptive //= 2
                if status == BP_RUNNING:  # a blown-up run is restored first; Ctrl-C comes after
                    PyErr_CheckSignals()
                if (callback is not None and callback_every > 0 and ran > 0
                        and done % callback_every == 0 and status == BP_RUNNING):
                    stopped_by_callback = bool(callback(int(done), float(errors[done - 1])))
            if status != BP_RUNNING or stopped_by_callback:
                break
        if status == BP_NON_FINITE:
            # Back to the start of the last sweep whose error was finite: the newest snapshot at
            # or before it, then the same sweeps again (training is deterministic).
            target = max(done - 1, 0)
            snap_done, snap_params, snap_velocity, state = \
                [snap for snap in snapshots if snap[0] <= target][-1]
            params_array[...] = snap_params
            velocity_array[...] = snap_velocity
            scratch = np.empty(max(target - snap_done, 1), dtype=np.float64)
            position, first = snap_done, 0
            for index in range(len(phases)):
                end = first + phases[index][0]
                if position < min(end, target):
                    ran, _ = run(index, min(end, target) - position, scratch)
                    position += ran
                first = end
            done = target
        with nogil:
            if floating is float:
                final_error = KERNELS.evaluate_f32(net, <bp_workspace_f32 *>ws, &params[0],
                                                   &X[0, 0], &T[0, 0], &cfg, &all_within)
            else:
                final_error = KERNELS.evaluate_f64(net, <bp_workspace_f64 *>ws, &params[0],
                                                   &X[0, 0], &T[0, 0], &cfg, &all_within)
    finally:
        _free_workspace(kind, ws)
        if holder is not None:
            holder[0] = state
    if stopped_by_callback:
        status_name = "stopped"
    else:
        status_name = STATUS_NAMES[status]
    return (errors_array[:done].copy(), int(done), status_name, float(final_error),
            bool(all_within), int(state))


def build_facts():
    """OpenMP, instruction sets and compiler flags of this build."""
    return {
        "openmp": bool(bp_openmp_enabled()),
        "openmp_max_threads": int(bp_openmp_max_threads()),
        "simd": KERNELS.name.decode(),
        "simd_available": available_isas(),
        "compile_args": BPFAST_CFLAGS.decode(),
    }


ISA_NAMES = ("avx512", "avx2", "baseline")


def available_isas():
    """The kernel variants this CPU can run, best first."""
    return [name for name in ISA_NAMES if bp_kernels_named(name.encode()) != NULL]


def set_isa(name):
    """Use the kernel variant `name` ("" for the best available) from now on, for every network.
    Not thread-safe: meant for tests and benchmarks, or for BPFAST_ISA at import."""
    global KERNELS
    cdef const bp_kernels *chosen = bp_kernels_named(name.encode())
    if chosen == NULL:
        raise ValueError(f"kernel variant {name!r} is unknown or not supported by this CPU; "
                         f"choose one of {available_isas()}")
    KERNELS = chosen


def logistic(x):
    """The kernels' vectorised logistic 1/(1+exp(-x)) of a float32 or float64 array (a copy)."""
    out = np.array(x, copy=True, order="C")
    cdef float[::1] out32
    cdef double[::1] out64
    if out.dtype == np.float32:
        out32 = out.reshape(-1)
        KERNELS.logistic_f32(&out32[0], out32.shape[0])
    else:
        out64 = out.reshape(-1)
        KERNELS.logistic_f64(&out64[0], out64.shape[0])
    return out


set_isa(os.environ.get("BPFAST_ISA", ""))
