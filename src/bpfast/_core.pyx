# cython: language_level=3
"""The compiled driver: thin typed wrappers around csrc/ that release the GIL.

It validates nothing (bpfast.network does): arrays arrive C-contiguous, finite and of one dtype,
shapes already checked. The public functions here have the same names and signatures as their
float64 oracles in bpfast.reference, and a test keeps them so.
"""

from libc.stdint cimport int64_t, uint64_t
from cython cimport floating
from cpython.exc cimport PyErr_CheckSignals
from cpython.pythread cimport PyThread_get_thread_ident
from posix.unistd cimport getpid

import os

import numpy as np

cdef extern from "bpfast.h" nogil:
    ctypedef struct bp_recurrence:
        int n_steps, n_inputs, n_hidden, n_outputs
        int hidden_activation, output_activation
        int64_t w_in, w_rec, w_out, b_hidden, b_output

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
        int64_t n_dense
        int64_t n_share_runs
        const int64_t *share_runs
        int64_t share_chunk
        const int64_t *share_chunk_start
        const int64_t *share_chunk_runs
        const double *share_scale
        const int *row_start
        const int *row_end
        const bp_recurrence *recurrence

    ctypedef struct bp_stop:
        int interruptible
        uint64_t interrupts_seen
        double deadline

    ctypedef struct bp_train_config:
        int64_t n_samples
        int64_t batch_size
        int shuffle
        int loss
        int mean
        int weighted
        double dead_zone_off
        double dead_zone_on
        double stop_tol
        int n_threads
        const bp_stop *stop
        int small_nets
        double dropout
        uint64_t dropout_key
        int x_double
        int64_t max_batches
        int64_t *batches_run

    ctypedef struct bp_phase:
        double lr
        double momentum
        double weight_decay
        int64_t n_decayed
        int rule
        double beta2
        double epsilon
        double clip_norm

    ctypedef struct bp_members:
        const double *lr
        const double *momentum
        const double *weight_decay
        const double *stop_tol
        const int64_t *n_sweeps
        int64_t n_decayed

    enum: BP_MOMENTUM, BP_ADAM
    enum: BP_RUNNING, BP_SOLVED, BP_NON_FINITE, BP_NON_FINITE_WEIGHTS, BP_STOPPED, BP_PAUSED
    enum: BP_WS_TRAINING, BP_WS_SWEEP_START, BP_WS_ADAM
    const char *bp_activation_name(int i)
    const char *bp_loss_name(int i)

    ctypedef struct bp_workspace_f32
    ctypedef struct bp_workspace_f64
    bp_workspace_f32 *bp_workspace_create_f32(const bp_net *net, int64_t max_rows, int64_t n_samples,
                                              int features)
    bp_workspace_f64 *bp_workspace_create_f64(const bp_net *net, int64_t max_rows, int64_t n_samples,
                                              int features)
    size_t bp_workspace_bytes_f32(const bp_net *net, int64_t max_rows, int64_t n_samples,
                                  int features)
    size_t bp_workspace_bytes_f64(const bp_net *net, int64_t max_rows, int64_t n_samples,
                                  int features)
    void bp_workspace_free_f32(bp_workspace_f32 *ws)
    void bp_workspace_free_f64(bp_workspace_f64 *ws)
    const float *bp_workspace_activations_f32(const bp_workspace_f32 *ws, int l, int64_t *ld)
    const double *bp_workspace_activations_f64(const bp_workspace_f64 *ws, int l, int64_t *ld)

    ctypedef struct bp_kernels:
        const char *name
        int (*forward_f32)(const bp_net *net, bp_workspace_f32 *ws, const float *params,
                           const float *X, int64_t n_rows, int n_threads,
                           const bp_stop *stop) noexcept nogil
        int (*forward_f64)(const bp_net *net, bp_workspace_f64 *ws, const double *params,
                           const double *X, int64_t n_rows, int n_threads,
                           const bp_stop *stop) noexcept nogil
        double (*loss_gradient_f32)(const bp_net *net, bp_workspace_f32 *ws, float *grad,
                                    const float *params, const float *X, const float *T,
                                    int64_t n_rows, const bp_train_config *cfg, int *all_within) noexcept nogil
        double (*loss_gradient_f64)(const bp_net *net, bp_workspace_f64 *ws, double *grad,
                                    const double *params, const double *X, const double *T,
                                    int64_t n_rows, const bp_train_config *cfg, int *all_within) noexcept nogil
        int (*update_f32)(float *params, float *velocity, const float *grad,
                          int64_t n_params, const bp_phase *phase, int n_threads) noexcept nogil
        int (*update_f64)(double *params, double *velocity, const double *grad,
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
        void (*unit_function_f32)(float *x, int64_t n, int function) noexcept nogil
        int (*small_net_f32)(const bp_net *net) noexcept nogil
        int (*population_lanes_f32)(const bp_net *net, int64_t n_samples, int weighted) noexcept nogil
        void (*unit_function_f64)(double *x, int64_t n, int function) noexcept nogil
        int (*small_net_f64)(const bp_net *net) noexcept nogil
        int (*population_lanes_f64)(const bp_net *net, int64_t n_samples, int weighted) noexcept nogil
        int (*population_train_f32)(const bp_net *net, const int64_t *order, int64_t n_order,
                                    float *params, float *velocity, float *back, const float *X,
                                    int64_t x_stride, const float *T, int64_t t_stride,
                                    const bp_train_config *cfg, const bp_members *members,
                                    int *status, int64_t *n_done, double *errors,
                                    int64_t errors_ld, double *final_error,
                                    int *within) noexcept nogil
        int (*population_train_f64)(const bp_net *net, const int64_t *order, int64_t n_order,
                                    double *params, double *velocity, double *back,
                                    const double *X,
                                    int64_t x_stride, const double *T, int64_t t_stride,
                                    const bp_train_config *cfg, const bp_members *members,
                                    int *status, int64_t *n_done, double *errors,
                                    int64_t errors_ld, double *final_error,
                                    int *within) noexcept nogil

    const bp_kernels *bp_kernels_named(const char *name)
    int bp_openmp_enabled()
    int bp_openmp_max_threads()
    int bp_openmp_bound_procs()

    void bp_runtime_init()
    int bp_forked_after_parallel()
    int bp_try_threads(int wanted)
    int bp_interrupt_install()
    void bp_interrupt_uninstall()
    void bp_interrupt_rearm()
    uint64_t bp_interrupt_count()
    double bp_monotonic_seconds()
    int bp_stop_requested(const bp_stop *stop)

cdef extern from *:
    """
    #ifndef BPFAST_CFLAGS
    #define BPFAST_CFLAGS "unknown"
    #endif
    """
    const char *BPFAST_CFLAGS

# The kernel variant in use: the best this CPU supports, or BPFAST_ISA (set at the end of import).
# Each call reads it once, so set_isa() between calls never mixes variants within one.
cdef const bp_kernels *KERNELS = bp_kernels_named(NULL)

bp_runtime_init()

RULES = {"momentum": BP_MOMENTUM, "adam": BP_ADAM}


cdef tuple _names(bint losses):
    cdef const char *name
    names, i = [], 0
    while True:
        name = bp_loss_name(i) if losses else bp_activation_name(i)
        if name == NULL:
            return tuple(names)
        names.append(name.decode())
        i += 1


# The C core's lists (csrc/bpfast.h), in enum order: bpfast.units lists the same (a test checks).
ACTIVATION_NAMES = _names(False)
LOSS_NAMES = _names(True)
LOSSES = {name: i for i, name in enumerate(LOSS_NAMES)}
STATUS_NAMES = {BP_RUNNING: "max_sweeps", BP_SOLVED: "solved", BP_NON_FINITE: "non_finite",
                BP_NON_FINITE_WEIGHTS: "non_finite_weights"}

# Rows per workspace when a forward pass runs over many cases: bounds the memory of predict().
FORWARD_CHUNK_ROWS = 8192
# Sweeps per compiled call grow by doubling while calls are short; this caps the doubling.
MAX_CHUNK_SWEEPS = 1 << 20
# A ThreadChooser's chunks of a mini-batch run are batches, not sweeps, when its sweeps have at
# least this many (a fit of a few long sweeps then tries threads inside the first; cutting
# shorter sweeps would cost more calls than it saves). Such chunks start at one batch and grow;
# the chooser plans none until one thread has run a chunk of at least MIN_MEASURED_SECONDS (a
# batch or two are too short to time, and the first call also pays for the workspace's pages).
MIN_BATCHES_TO_CUT = 32
MIN_MEASURED_SECONDS = 0.005
# Seconds between the snapshots that a diverged run is restored from (tests set it to 0).
SNAPSHOT_SECONDS = 1.0
# Called with a point's name wherever a KeyboardInterrupt can reach a training run (tests set it
# to inject one at every such point); None in normal use.
interrupt_hook = None


def workspace_rows(batch_size, n_samples, evaluates=True):
    """Rows of the workspace a training run allocates: a batch, and, if the run `evaluates` every
    case (the stop rule, final_error), at least a forward chunk (or all cases) so that that does
    not go a tiny batch at a time. A run that does not evaluate holds one batch: a diverged run
    still evaluates, in batches, to say where."""
    rows = min(batch_size, n_samples)
    return max(rows, min(n_samples, FORWARD_CHUNK_ROWS)) if evaluates else rows


# -- the process --------------------------------------------------------------------------------

def forked_after_parallel():
    """Whether this process was forked after bpfast had run threads: it then runs on one."""
    return bool(bp_forked_after_parallel())


def openmp_max_threads():
    """omp_get_max_threads() for the calling thread (OMP_NUM_THREADS, threadpoolctl limits)."""
    return int(bp_openmp_max_threads())


def openmp_bound_procs():
    """With OpenMP's thread binding on, the processors it counts for the process; else 0."""
    return int(bp_openmp_bound_procs())


def try_threads(int wanted):
    """How many threads, counting the caller, the system lets run at once (up to `wanted`)."""
    cdef int got
    with nogil:
        got = bp_try_threads(wanted)
    return got


def monotonic_seconds():
    """The clock of compiled deadlines."""
    return bp_monotonic_seconds()


cdef int _arm_interrupts(bp_stop *stop) except -1:
    """Let compiled loops see Ctrl-C: in the main thread, while Python handles SIGINT (only there
    can a KeyboardInterrupt be raised). Returns whether to disarm afterwards."""
    import signal
    import threading
    stop.interrupts_seen = bp_interrupt_count()
    stop.deadline = 0
    stop.interruptible = 0
    if threading.current_thread() is threading.main_thread() and \
            callable(signal.getsignal(signal.SIGINT)):
        stop.interruptible = bp_interrupt_install()
    return stop.interruptible


cdef int _interrupted(bp_stop *stop) except -1:
    """After a stop: run Python's signal handlers (raising KeyboardInterrupt, as a rule) and say
    whether the stop was an interrupt (else a deadline). Re-arms for the next call."""
    cdef bint was_interrupt = stop.interruptible and bp_interrupt_count() != stop.interrupts_seen
    _check_signals("stopped")
    stop.interrupts_seen = bp_interrupt_count()
    return was_interrupt


cdef int _check_signals(str point) except -1:
    if interrupt_hook is not None:
        interrupt_hook(point)
    PyErr_CheckSignals()
    return 0


cdef class TrainingGuard:
    """Marks a network as being trained. Taken and released inside compiled code, where nothing
    can run between the test and the mark and no KeyboardInterrupt can skip the release. A mark
    inherited through fork() from a training thread that the child does not have is void."""
    cdef int busy
    cdef unsigned long owner_thread
    cdef long owner_pid

    cdef int holder(self) noexcept:
        """0: nobody holds the mark (a mark inherited through fork() is nobody's), else 1 if
        this thread does, 2 if another; a free mark is taken for this thread."""
        cdef unsigned long me = PyThread_get_thread_ident()
        if self.busy and self.owner_pid == getpid():
            return 1 if self.owner_thread == me else 2
        self.busy, self.owner_thread, self.owner_pid = 1, me, getpid()
        return 0

    cdef int claim(self) except -1:
        cdef int held = self.holder()
        if held == 1:
            raise RuntimeError(
                "fit was called on this network from inside its own fit (from the callback?); "
                "return True from the callback to stop training, then call fit again")
        if held == 2:
            raise RuntimeError("this network is already being trained (or saved) in another "
                               "thread; train a copy (copy.deepcopy(net)) or wait for that to "
                               "finish")
        return 0

    cdef int claim_to_read(self, str what) except -1:
        """1 if claimed for a read of the whole state; 0 if this thread's own fit holds the mark
        (a callback: the state is between sweeps, whole); RuntimeError if another thread's."""
        cdef int held = self.holder()
        if held == 2:
            raise RuntimeError(f"cannot {what} while another thread trains or saves it: its "
                               f"params and velocity would come from different sweeps; wait "
                               f"for that to finish, or {what} from its fit's callback")
        return held == 0

    cdef void release(self) noexcept:
        self.busy = 0

    def reading(self, str what):
        """A context in which no fit changes the state (params, velocity, generator) while it
        is read whole: `with net._guard.reading("save the network"): ...`."""
        return _StateRead(self, what)

    def __enter__(self):
        self.claim()
        return self

    def __exit__(self, *exc_info):
        self.release()
        return False


cdef class _StateRead:
    """TrainingGuard.reading's context: claimed and released in compiled code (see
    TrainingGuard), left alone inside the fit that holds the mark (its callback's read)."""
    cdef TrainingGuard guard
    cdef str what
    cdef bint claimed

    def __cinit__(self, TrainingGuard guard, str what):
        self.guard, self.what, self.claimed = guard, what, False

    def __enter__(self):
        self.claimed = self.guard.claim_to_read(self.what)
        return self

    def __exit__(self, *exc_info):
        if self.claimed:
            self.claimed = False
            self.guard.release()
        return False


# -- the topology and workspaces ----------------------------------------------------------------

cdef class CompiledTopology:
    """A Topology's tables as the C struct; keeps the arrays it points into alive."""
    cdef bp_net net
    cdef bp_recurrence recurrence
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
        self.net.n_dense = topology.n_dense
        cdef const int64_t[:, ::1] share_runs
        cdef const int64_t[::1] chunk_start, chunk_runs
        cdef const double[::1] share_scale
        cdef const int[::1] row_start, row_end
        if topology.shared:
            row_start, row_end = topology.row_start, topology.row_end
            self.arrays += (row_start, row_end)
            self.net.row_start = &row_start[0]
            self.net.row_end = &row_end[0]
            share_runs = topology.share_runs
            chunk_start, chunk_runs = topology.share_chunk_start, topology.share_chunk_runs
            self.arrays += (share_runs, chunk_start, chunk_runs)
            self.net.n_share_runs = share_runs.shape[0]
            self.net.share_runs = &share_runs[0, 0]
            self.net.share_chunk = topology.share_chunk
            self.net.share_chunk_start = &chunk_start[0]
            self.net.share_chunk_runs = &chunk_runs[0]
            if topology.share_scale is not None:
                share_scale = topology.share_scale
                self.arrays += (share_scale,)
                self.net.share_scale = &share_scale[0]
        recurrence = getattr(topology, "recurrence", None)
        if recurrence is not None:  # set and checked by RecurrentNetwork._mark_recurrent
            r, n_params = recurrence, topology.n_params
            weights = ((r.w_in, r.n_hidden * r.n_inputs), (r.w_rec, r.n_hidden * r.n_hidden),
                       (r.w_out, r.n_outputs * r.n_hidden))
            biases = ((r.b_hidden, r.n_hidden), (r.b_output, r.n_outputs))
            fits = (all(0 <= at and at + n <= n_params for at, n in weights)
                    and all(at == -1 or 0 <= at and at + n <= n_params for at, n in biases)
                    and all(0 <= a < len(ACTIVATION_NAMES)
                            for a in (r.hidden_activation, r.output_activation))
                    and r.n_steps * r.n_inputs == topology.n_input_cols
                    and r.n_steps * r.n_outputs == topology.n_outputs)
            if not fits:
                raise ValueError(f"a recurrence that does not fit its topology: {r}")
            self.recurrence = bp_recurrence(
                r.n_steps, r.n_inputs, r.n_hidden, r.n_outputs, r.hidden_activation,
                r.output_activation, r.w_in, r.w_rec, r.w_out, r.b_hidden, r.b_output)
            self.net.recurrence = &self.recurrence


cdef CompiledTopology _compiled(topology):
    if topology._compiled is None:
        topology._compiled = CompiledTopology(topology)
    return topology._compiled


cdef int _check_arrays(topology, int64_t n_params, int64_t n_velocity, int64_t n_grad,
                       int64_t x_cols, int64_t t_cols, bint weighted=False) except -1:
    """The lengths the C code will index by, checked at the boundary whatever the caller did (a
    resized or replaced array must never reach it). -1: not passed."""
    if n_params != topology.n_params or n_grad not in (-1, n_params) or \
            n_velocity not in (-1, n_params, 2 * n_params + 1):
        raise ValueError(f"the parameter arrays must each have {topology.n_params} values (got "
                         f"{n_params}, {n_velocity}, {n_grad}); was net.params resized?")
    if x_cols != topology.n_input_cols or t_cols not in (-1, topology.n_outputs + weighted):
        raise ValueError(f"X must have {topology.n_input_cols} columns and T "
                         f"{topology.n_outputs}, got {x_cols} and {t_cols - weighted}")
    return 0


# Every workspace feature: the largest workspace a training run can take.
ALL_FEATURES = BP_WS_TRAINING | BP_WS_SWEEP_START | BP_WS_ADAM


def workspace_bytes(topology, dtype, int64_t max_rows, int64_t n_samples, int features):
    """Bytes of the workspace bp_workspace_create would allocate (for the memory guard)."""
    cdef CompiledTopology compiled = _compiled(topology)
    if np.dtype(dtype) == np.float32:
        return int(bp_workspace_bytes_f32(&compiled.net, max_rows, n_samples, features))
    return int(bp_workspace_bytes_f64(&compiled.net, max_rows, n_samples, features))


# Whether tiny nets train through the whole-net loop of csrc/small_nets.inc.c (the same bits as the
# layer-by-layer kernels, faster). A switch for the tests that compare the two.
SMALL_NETS = True


cdef bp_train_config _config(int64_t n_samples, int64_t batch_size, bint shuffle, str loss,
                             dead_zone, stop_tol, int n_threads, str reduction="sum",
                             bint weighted=False, double dropout=0.0,
                             uint64_t dropout_key=0) except *:
    cdef bp_train_config cfg
    cfg.n_samples = n_samples
    cfg.batch_size = batch_size
    cfg.shuffle = shuffle
    cfg.loss = LOSSES[loss]
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    cfg.mean = reduction == "mean"
    cfg.weighted = weighted
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    cfg.dropout = dropout
    cfg.dropout_key = dropout_key
    cfg.dead_zone_off = dead_zone[0]
    cfg.dead_zone_on = dead_zone[1]
    cfg.stop_tol = stop_tol if stop_tol is not None else 0.0
    cfg.n_threads = n_threads
    cfg.stop = NULL
    cfg.small_nets = SMALL_NETS
    cfg.x_double = 0
    cfg.max_batches = 0
    cfg.batches_run = NULL
    return cfg


cdef void *_workspace(floating *kind, const bp_net *net, int64_t max_rows,
                      int64_t n_samples, int features) except NULL:
    cdef void *ws
    if floating is float:
        ws = bp_workspace_create_f32(net, max_rows, n_samples, features)
    else:
        ws = bp_workspace_create_f64(net, max_rows, n_samples, features)
    if ws == NULL:
        raise MemoryError(f"bpfast could not allocate buffers for batches of {max_rows} rows")
    return ws


cdef void _free_workspace(floating *kind, void *ws) noexcept:
    if floating is float:
        bp_workspace_free_f32(<bp_workspace_f32 *>ws)
    else:
        bp_workspace_free_f64(<bp_workspace_f64 *>ws)


# -- forward, gradient, evaluation, update ------------------------------------------------------

def forward(topology, params, X, *, all_layers=False, n_threads=1):
    """Activations of every layer (a list, inputs first) or of the output layer only. X may be
    C-contiguous float64 for float32 params: each chunk of it is then rounded as it is bound (the
    same numbers as X.astype(np.float32)), so that no float32 copy of the whole X is made."""
    return _forward(topology, params, X, all_layers, n_threads)


def _forward(topology, const floating[::1] params, X_given, bint all_layers, int n_threads):
    cdef const bp_kernels *kernels = KERNELS
    cdef CompiledTopology compiled = _compiled(topology)
    cdef const bp_net *net = &compiled.net
    cdef int64_t n = X_given.shape[0], start, rows, ld, r, c
    cdef int l, outcome
    cdef floating *kind = NULL
    cdef int64_t chunk = min(max(n, 1), FORWARD_CHUNK_ROWS)
    cdef bp_stop stop
    cdef const floating[:, ::1] X
    cdef int64_t row0  # X's row of the chunk's first case
    _check_arrays(topology, params.shape[0], -1, -1, X_given.shape[1], -1)
    dtype = np.float32 if floating is float else np.float64
    # float64 rows for float32 params, rounded a chunk at a time (all_layers returns the inputs:
    # rounded all at once)
    cdef bint by_chunk = X_given.dtype != dtype and not all_layers
    Xa = X_given if by_chunk else np.ascontiguousarray(X_given, dtype=dtype)
    chunk_rows = np.empty((chunk, Xa.shape[1]), dtype=dtype) if by_chunk else None
    X = chunk_rows if by_chunk else Xa
    first = 0 if all_layers else topology.n_layers - 1
    outs = [np.empty((n, topology.size[l]), dtype=dtype)
            for l in range(max(first, topology.n_inputs), topology.n_layers)]
    cdef floating[:, ::1] out
    cdef const floating *act
    cdef void *ws = _workspace(kind, net, chunk, 0, 0)
    armed = _arm_interrupts(&stop)
    try:
        start = 0
        while start < n:
            rows = min(chunk, n - start)
            row0 = start
            if by_chunk:  # this chunk's rows, rounded into the chunk buffer
                np.copyto(chunk_rows[:rows], Xa[start:start + rows], casting="same_kind")
                row0 = 0
            with nogil:
                if floating is float:
                    outcome = kernels.forward_f32(net, <bp_workspace_f32 *>ws, &params[0],
                                                  &X[row0, 0], rows, n_threads, &stop)
                else:
                    outcome = kernels.forward_f64(net, <bp_workspace_f64 *>ws, &params[0],
                                                  &X[row0, 0], rows, n_threads, &stop)
            if outcome == BP_STOPPED:
                _interrupted(&stop)
                continue  # Python's handler did not raise: this chunk again
            for i, l in enumerate(range(max(first, topology.n_inputs), topology.n_layers)):
                out = outs[i]
                if floating is float:
                    act = bp_workspace_activations_f32(<bp_workspace_f32 *>ws, l, &ld)
                else:
                    act = bp_workspace_activations_f64(<bp_workspace_f64 *>ws, l, &ld)
                for r in range(rows):  # feature-major (units, ld) back to (cases, units)
                    for c in range(out.shape[1]):
                        out[start + r, c] = act[c * ld + r]
            start += rows
            _check_signals("forward")
    finally:
        if armed:
            bp_interrupt_uninstall()
        _free_workspace(kind, ws)
    if not all_layers:
        return outs[-1]
    cols = topology.input_col
    return [Xa[:, cols[i]:cols[i] + topology.size[i]] for i in range(topology.n_inputs)] + outs


def _weighted_targets(T, sample_weight):
    """T with each case's weight as one more column (what the C core reads when cfg.weighted)."""
    if sample_weight is None:
        return T
    T = np.asarray(T)
    return np.ascontiguousarray(np.column_stack([T, np.asarray(sample_weight, dtype=T.dtype)]))


def loss_gradient(topology, params, X, T, *, loss="sse", dead_zone=(0.2, 0.8), reduction="sum",
                  sample_weight=None, dropout=0.0, dropout_key=0, n_threads=1):
    """(E, gradient) over all rows of X: E = sum over cases of the loss (times each case's
    weight), the gradient of E, or of E / (the cases, or their total weight) for 'mean'. With
    dropout > 0, of the net whose hidden units are dropped by the masks of `dropout_key`."""
    return _loss_gradient(topology, params, X, _weighted_targets(T, sample_weight), loss,
                          dead_zone, reduction, sample_weight is not None, dropout, dropout_key,
                          n_threads)


def _loss_gradient(topology, const floating[::1] params, const floating[:, ::1] X,
                   const floating[:, ::1] T, str loss, dead_zone, str reduction, bint weighted,
                   double dropout, uint64_t dropout_key, int n_threads):
    cdef const bp_kernels *kernels = KERNELS
    cdef CompiledTopology compiled = _compiled(topology)
    cdef const bp_net *net = &compiled.net
    cdef int64_t n = X.shape[0]
    _check_arrays(topology, params.shape[0], -1, -1, X.shape[1], T.shape[1], weighted)
    cdef bp_train_config cfg = _config(n, n, False, loss, dead_zone, None, n_threads, reduction,
                                       weighted, dropout, dropout_key)
    cdef floating *kind = NULL
    cdef int all_within
    cdef double error
    grad_array = np.empty(topology.n_params, dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] grad = grad_array
    cdef void *ws = _workspace(kind, net, n, 0, BP_WS_TRAINING)
    try:
        with nogil:
            if floating is float:
                error = kernels.loss_gradient_f32(net, <bp_workspace_f32 *>ws, &grad[0], &params[0],
                                                  &X[0, 0], &T[0, 0], n, &cfg, &all_within)
            else:
                error = kernels.loss_gradient_f64(net, <bp_workspace_f64 *>ws, &grad[0], &params[0],
                                                  &X[0, 0], &T[0, 0], n, &cfg, &all_within)
    finally:
        _free_workspace(kind, ws)
    return error, grad_array


def evaluate(topology, params, X, T, *, loss="sse", dead_zone=(0.2, 0.8), stop_tol=None,
             sample_weight=None, n_threads=1):
    """(E, all_within) of the weights over every row of X, without gradients: E the summed loss
    (times each case's weight), all_within whether every output of a case of non-zero weight is
    within stop_tol of its target."""
    return _evaluate(topology, params, X, _weighted_targets(T, sample_weight), loss, dead_zone,
                     stop_tol, sample_weight is not None, n_threads)


def _evaluate(topology, const floating[::1] params, const floating[:, ::1] X,
              const floating[:, ::1] T, str loss, dead_zone, stop_tol, bint weighted,
              int n_threads):
    cdef CompiledTopology compiled = _compiled(topology)
    cdef int64_t n = X.shape[0]
    _check_arrays(topology, params.shape[0], -1, -1, X.shape[1], T.shape[1], weighted)
    cdef bp_train_config cfg = _config(n, n, False, loss, dead_zone, stop_tol, n_threads, "sum",
                                       weighted)
    cdef floating *kind = NULL
    cdef int all_within
    cdef double error
    cdef bp_stop stop
    cdef void *ws = _workspace(kind, &compiled.net, <int64_t>min(n, FORWARD_CHUNK_ROWS), 0, 0)
    armed = _arm_interrupts(&stop)
    cfg.stop = &stop
    try:
        error = _evaluate_in(KERNELS, &compiled.net, ws, params, &X[0, 0], T, &cfg, &all_within)
    finally:
        if armed:
            bp_interrupt_uninstall()
        _free_workspace(kind, ws)
    return error, bool(all_within)


cdef double _evaluate_in(const bp_kernels *kernels, const bp_net *net, void *ws,
                         const floating[::1] params, const floating *X,
                         const floating[:, ::1] T, bp_train_config *cfg,
                         int *all_within) except? -1:
    """Evaluation in a workspace, again after every stop (Ctrl-C raises from _interrupted). X: the
    cases' first value (doubles if cfg.x_double)."""
    cdef double error
    while True:
        with nogil:
            if floating is float:
                error = kernels.evaluate_f32(net, <bp_workspace_f32 *>ws, &params[0], X,
                                             &T[0, 0], cfg, all_within)
            else:
                error = kernels.evaluate_f64(net, <bp_workspace_f64 *>ws, &params[0], X,
                                             &T[0, 0], cfg, all_within)
        if cfg.stop == NULL or not bp_stop_requested(cfg.stop):
            return error
        _interrupted(<bp_stop *>cfg.stop)


def update(params, state, grad, *, lr, momentum, weight_decay=0.0, n_decayed=0,
           rule="momentum", beta2=0.999, epsilon=1e-8, clip_norm=0.0, n_threads=1):
    """One update in place, of the rule's state: momentum (state = the velocity v):
    v = momentum v - lr g; w += v. Adam (state = [m | v | t]): see csrc/kernels.inc.c. Then
    w *= 1 - weight_decay for w[:n_decayed]. g is the gradient, scaled down to the norm clip_norm
    if it is longer (clip_norm > 0). Returns whether a weight became NaN or infinite."""
    return _update(params, state, grad, _phase_struct((1, lr, momentum, weight_decay, n_decayed,
                                                       rule, beta2, epsilon, clip_norm)),
                   n_threads)


PHASE_DEFAULTS = ("momentum", 0.999, 1e-8, 0.0)  # rule, beta2, epsilon, clip_norm


def _full_phase(phase):
    """(n_sweeps, lr, momentum, weight_decay, n_decayed, rule, beta2, epsilon, clip_norm): a
    phase of 5 to 9 values, the rest from PHASE_DEFAULTS."""
    phase = tuple(phase)
    if not 5 <= len(phase) <= 9:
        raise ValueError(f"a phase is (n_sweeps, lr, momentum, weight_decay, n_decayed[, rule, "
                         f"beta2, epsilon, clip_norm]), got {phase!r}")
    return phase + PHASE_DEFAULTS[len(phase) - 5:]


cdef bp_phase _phase_struct(phase) except *:
    """A phase tuple (see _full_phase) as the C struct."""
    cdef bp_phase ph
    phase = _full_phase(phase)
    ph.lr, ph.momentum, ph.weight_decay, ph.n_decayed = phase[1:5]
    if phase[5] not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)}, got {phase[5]!r}")
    ph.rule = RULES[phase[5]]
    ph.beta2, ph.epsilon, ph.clip_norm = phase[6:9]
    return ph


def _update(floating[::1] params, floating[::1] state, const floating[::1] grad, bp_phase phase,
            int n_threads):
    cdef int non_finite
    cdef int64_t n = params.shape[0]
    cdef int64_t n_state = 2 * n + 1 if phase.rule == BP_ADAM else n
    if state.shape[0] != n_state or grad.shape[0] != n or not 0 <= phase.n_decayed <= n:
        raise ValueError(f"params and grad must have one length, the state {n_state} values for "
                         f"this rule, and n_decayed fit in it; got {n}, {grad.shape[0]}, "
                         f"{state.shape[0]} and {phase.n_decayed}")
    with nogil:
        if floating is float:
            non_finite = KERNELS.update_f32(&params[0], &state[0], &grad[0], n, &phase, n_threads)
        else:
            non_finite = KERNELS.update_f64(&params[0], &state[0], &grad[0], n, &phase, n_threads)
    return bool(non_finite)


# -- training -----------------------------------------------------------------------------------

def train(topology, params, velocity, X, T, phases, *, batch_size, shuffle=True, loss="sse",
          dead_zone=(0.2, 0.8), reduction="sum", sample_weight=None, dropout=0.0, stop_tol=None,
          rng_state=0, callback=None, callback_every=0, n_threads=1):
    """Run every phase of a schedule; return (errors, n_sweeps, status, final_error, all_within,
    rng_state).

    `phases` is a sequence of (n_sweeps, lr, momentum, weight_decay, n_decayed, rule, beta2,
    epsilon, clip_norm) (see `update`); `velocity` is the state of the phases' rule (momentum and
    Adam do not mix in one call). The errors are of E summed over the cases (times their
    weights), whatever the reduction of the gradient. The sweeps run in
    compiled code with the GIL released, in chunks: between chunks Python checks for signals
    (Ctrl-C raises KeyboardInterrupt with the weights of the last finished sweep; inside a long
    sweep the compiled loop notices it too and puts back the sweep's start) and, every
    `callback_every` sweeps, calls ``callback(sweep, error)``; a true return value stops training.
    Chunks grow until each takes a few tens of milliseconds; their size never changes the result.
    If the error or a weight becomes NaN or infinite, the weights, velocities and generator go
    back to the start of the last sweep whose error and weights were finite, and the status is
    "non_finite" (the error) or "non_finite_weights".
    `rng_state` (the shuffling generator) is an int, or a 1-element uint64 array that receives the
    final state even when training is interrupted.
    """
    return run_training(topology, params, velocity, X, T, phases, batch_size=batch_size,
                        shuffle=shuffle, loss=loss, dead_zone=dead_zone, reduction=reduction,
                        sample_weight=sample_weight, dropout=dropout, stop_tol=stop_tol,
                        rng_state=rng_state, callback=callback, callback_every=callback_every,
                        n_threads=n_threads)


def run_training(topology, params, velocity, X, T, phases, *, batch_size, shuffle=True,
                 loss="sse", dead_zone=(0.2, 0.8), reduction="sum", sample_weight=None,
                 dropout=0.0, stop_tol=None, rng_state=0, callback=None, callback_every=0,
                 n_threads=1, chooser=None, guard=None, memory_check=None, evaluate=True,
                 watch=None, on_start=None):
    """`train`, with what Network.fit adds: a ThreadChooser that may run chunks on one thread
    instead of n_threads, a TrainingGuard held for the whole call, memory_check(n_bytes, what),
    called before each allocation of the run with its size, and `evaluate`: False skips the
    final pass over every case (final_error NaN, all_within False) unless training diverged.
    With an InterruptWatch (for calls in threads other than the main one, which only the main
    thread can arm), a Ctrl-C that it sees ends the run at a sweep's end with status "stopped";
    the main thread raises the KeyboardInterrupt. `on_start()` is called once every check and
    allocation has passed, just before the first sweep (with the guard held): what a refused
    call must not change (Network.fit: a new rule's state becoming the network's) goes there."""
    return _train(topology, params, velocity, X, _weighted_targets(T, sample_weight), phases,
                  batch_size, shuffle, loss, dead_zone, reduction, sample_weight is not None,
                  dropout, stop_tol, rng_state, callback, callback_every, n_threads, chooser, guard,
                  memory_check, evaluate, watch, on_start)


cdef class InterruptWatch:
    """Ctrl-C for compiled loops in threads that Python does not interrupt: armed in the main
    thread (only it can) for the life of a `with` block, while the main thread waits for them."""
    cdef bp_stop stop
    cdef bint armed

    def __enter__(self):
        self.armed = _arm_interrupts(&self.stop)
        return self

    def __exit__(self, *exc_info):
        if self.armed:
            bp_interrupt_uninstall()
            self.armed = False
        return False

    def interrupted(self):
        """Whether a Ctrl-C has come since the block began."""
        return bool(self.stop.interruptible and bp_interrupt_count() != self.stop.interrupts_seen)


cdef class _ErrorLog:
    """The error of every sweep, grown as sweeps run (a run with a stop rule and a huge n_sweeps
    must not reserve them all), and trimmed in place at the end."""
    cdef public object array
    cdef object memory_check

    def __init__(self, int64_t total, memory_check):
        self.memory_check = memory_check
        self.array = np.zeros(0, dtype=np.float64)
        self.reserve(min(max(total, 1), 1024))

    def reserve(self, int64_t needed):
        cdef int64_t capacity = self.array.shape[0]
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity)
        if self.memory_check is not None:
            self.memory_check(8 * capacity, f"the error log of {capacity:,} sweeps")
        grown = np.zeros(capacity, dtype=np.float64)
        grown[:self.array.shape[0]] = self.array
        self.array = grown

    def trimmed(self, int64_t done):
        self.array.resize(max(done, 0), refcheck=False)
        return self.array


def _train(topology, floating[::1] params, floating[::1] velocity, X, const floating[:, ::1] T,
           phases, int64_t batch_size, bint shuffle, str loss, dead_zone, str reduction,
           bint weighted, double dropout, stop_tol, rng_state, callback, int64_t callback_every,
           int n_threads, chooser, TrainingGuard guard, memory_check, bint evaluate,
           InterruptWatch watch, on_start):
    cdef const bp_kernels *kernels = KERNELS
    cdef CompiledTopology compiled = _compiled(topology)
    cdef const bp_net *net = &compiled.net
    cdef int64_t n = X.shape[0]
    _check_arrays(topology, params.shape[0], velocity.shape[0], -1, X.shape[1], T.shape[1],
                  weighted)
    phases = [_full_phase(phase) for phase in phases]
    for phase in phases:
        if not 0 <= phase[4] <= params.shape[0]:
            raise ValueError(f"n_decayed must be in [0, {params.shape[0]}], got {phase[4]}")
    rules = {phase[5] for phase in phases}
    adam = rules == {"adam"}
    if len(rules) > 1 or velocity.shape[0] != (2 * params.shape[0] + 1 if adam else
                                               params.shape[0]):
        raise ValueError(f"the phases' rules {sorted(rules)} need one state of "
                         f"{'2 n_params + 1' if adam else 'n_params'} values, got "
                         f"{velocity.shape[0]} for {params.shape[0]} params")
    if T.shape[0] != n or n == 0:
        raise ValueError(f"X and T must have the same, non-zero number of rows, got {n} and "
                         f"{T.shape[0]}")
    cdef bp_train_config cfg = _config(n, min(batch_size, n), shuffle, loss, dead_zone, stop_tol,
                                       n_threads, reduction, weighted, dropout)
    # X in the params' type, or float64 for a float32 net: rounded as each case is bound, the
    # same numbers as a float32 copy of it would hold, without making one
    cdef const floating[:, ::1] x_same
    cdef const double[:, ::1] x_wide
    cdef const floating *x_data
    if floating is float and X.dtype == np.float64:
        x_wide = X
        x_data = <const floating *>&x_wide[0, 0]
        cfg.x_double = 1
    else:
        x_same = X
        x_data = &x_same[0, 0]
    cdef floating *kind = NULL
    cdef int64_t total = 0
    for p in phases:
        total += <int64_t>p[0]
    cdef int64_t done = 0, ran, chunk, adaptive = 1, remaining, target, count
    # Chunks of batches (see MIN_BATCHES_TO_CUT): each call runs at most the rest of one sweep;
    # `in_sweep`: the last call paused inside a sweep (perhaps before its first batch), of which
    # `into_sweep` batches are done; its start is in `sweep_start`
    cdef int64_t batches_run = 0, into_sweep = 0, sweep_batches
    cdef bint in_sweep = False
    cdef int status = BP_RUNNING, all_within = 0, threads
    cdef bint mini_batch = cfg.batch_size < n
    cdef size_t itemsize = sizeof(floating)
    cdef bp_stop stop
    cdef void *ws = NULL
    cdef double final_error = 0
    cdef double[::1] errors
    # rng_state: an int, or a 1-element uint64 array that gets the final state even if training
    # is interrupted (Ctrl-C, an exception from the callback).
    holder = rng_state if isinstance(rng_state, np.ndarray) else None
    cdef uint64_t state = int(holder[0]) if holder is not None else rng_state
    params_array, velocity_array = np.asarray(params), np.asarray(velocity)
    stopped_early = False
    replay_failed = False
    n_arena = topology.n_params * itemsize
    sweep_batches = (n + cfg.batch_size - 1) // cfg.batch_size
    cut_sweeps = mini_batch and chooser is not None and sweep_batches >= MIN_BATCHES_TO_CUT
    sweep_start = None
    measured = not cut_sweeps

    armed = False
    if guard is not None:
        guard.claim()
    try:
        if watch is None:
            armed = _arm_interrupts(&stop)
        else:  # armed by the main thread
            stop = watch.stop
        # A stop inside a mini-batch sweep needs that sweep's start kept (2 copies of the arena).
        features = BP_WS_TRAINING | (BP_WS_SWEEP_START if mini_batch and
                                     (stop.interruptible or chooser is not None) else 0) | \
            (BP_WS_ADAM if adam else 0)
        ws_rows = workspace_rows(cfg.batch_size, n, evaluate or cfg.stop_tol > 0)
        ws_samples = n if shuffle and mini_batch else 0
        if memory_check is not None:
            # the workspace, the gradient, two snapshots of params and velocity (the state of
            # the rule: 2 n_params + 1 values for Adam); and, where every sweep will run (no stop
            # rule, no callback), the whole error log now rather than hours into the run
            every_sweep = callback is None and not cfg.stop_tol > 0
            log_bytes = 8 * int(total) if every_sweep else 0
            memory_check(workspace_bytes(topology, params_array.dtype, ws_rows, ws_samples,
                                         features) + 3 * n_arena +
                         2 * velocity.shape[0] * itemsize + log_bytes,
                         f"training in batches of {ws_rows:,} rows" +
                         (f" with an error log of {total:,} sweeps" if log_bytes >= 2**20
                          else ""))
        log = _ErrorLog(total, memory_check)
        grad_array = np.empty(topology.n_params, dtype=params_array.dtype)
        # Where to come back to if the numbers blow up: (sweeps done, params, velocity, rng state),
        # taken at chunk starts at most once a second; the last two are kept.
        snapshots = [(0, params_array.copy(), velocity_array.copy(), state)]
        snapshot_time = monotonic_seconds()
        ws = _workspace(kind, net, <int64_t>ws_rows, <int64_t>ws_samples, <int>features)
        cfg.stop = &stop
        if on_start is not None:
            on_start()

        if cut_sweeps:
            cfg.batches_run = &batches_run
        for index in range(len(phases)):
            remaining = phases[index][0]
            while remaining > 0 and status == BP_RUNNING and not stopped_early:
                if cut_sweeps:  # batches, to the end of this sweep at most
                    chunk = min(adaptive, sweep_batches - into_sweep)
                else:
                    chunk = min(remaining, adaptive)
                    if callback is not None and callback_every > 0:
                        chunk = min(chunk, callback_every - done % callback_every)
                started = monotonic_seconds()
                if not in_sweep and started - snapshot_time >= SNAPSHOT_SECONDS:
                    del snapshots[:-1]  # before copying: never three copies at once
                    snapshots.append((done, params_array.copy(), velocity_array.copy(), state))
                    snapshot_time = started
                if cut_sweeps and not in_sweep:  # put back if an exception ends the run inside
                    sweep_start = (params_array.copy(), velocity_array.copy(), state)
                if chooser is None:
                    threads, stop.deadline = n_threads, 0.0
                elif not measured:
                    threads, stop.deadline = 1, 0.0
                else:
                    left = (total - done) * sweep_batches - into_sweep if cut_sweeps \
                        else total - done
                    chunk = chooser.chunk_size(chunk, left, started)
                    threads, stop.deadline = chooser.plan(chunk, left, started)
                cfg.n_threads = threads
                cfg.max_batches = chunk if cut_sweeps else 0
                count = 1 if cut_sweeps else chunk
                log.reserve(done + count)
                errors = log.array
                ran, status = _run(kernels, net, ws, params, velocity, grad_array, x_data, T, &cfg,
                                   phases[index], count, &state, errors, done, True)
                done += ran
                remaining -= ran
                paused = status == BP_PAUSED
                units = batches_run if cut_sweeps else ran
                in_sweep = paused
                into_sweep = into_sweep + batches_run if paused else 0
                if holder is not None:
                    holder[0] = state  # a callback sees the generator of the sweeps done
                finished = monotonic_seconds()
                elapsed = finished - started
                cut_short = paused and batches_run < chunk  # the deadline paused it
                if paused:
                    status = BP_RUNNING
                if status == BP_STOPPED and watch is not None and watch.interrupted():
                    status, stopped_early = BP_RUNNING, True
                    break
                if status == BP_STOPPED:
                    status = BP_RUNNING
                    cut_short = not _interrupted(&stop)  # else Python's handler did not raise
                if chooser is not None:
                    chooser.record(threads, units, elapsed, cut_short, finished)
                    measured = measured or elapsed >= MIN_MEASURED_SECONDS
                if elapsed < 0.02 and units == chunk == adaptive and adaptive < MAX_CHUNK_SWEEPS:
                    adaptive *= 2
                elif elapsed > 0.1 and adaptive > 1:
                    adaptive //= 2
                # a blown-up run is restored first, Ctrl-C comes after; inside a sweep the
                # compiled loop sees it at the next batch and puts back the sweep's start
                if status == BP_RUNNING and not in_sweep:
                    _check_signals("chunk")
                if (callback is not None and callback_every > 0 and ran > 0
                        and done % callback_every == 0 and status == BP_RUNNING):
                    stopped_early = bool(callback(int(done), float(log.array[done - 1])))
                    if armed:  # the callback may have set a SIGINT handler of its own (a save)
                        bp_interrupt_rearm()
            if status != BP_RUNNING or stopped_early:
                break
        cfg.n_threads = n_threads if chooser is None or chooser.use_threads else 1
        cfg.max_batches = 0
        cfg.batches_run = NULL
        stop.deadline = 0
        if status == BP_NON_FINITE or status == BP_NON_FINITE_WEIGHTS:
            # Back to the start of the last sweep whose error and weights were finite: the newest
            # snapshot at or before it, then the same sweeps again (training is deterministic),
            # checked against the errors the run logged.
            target = done if status == BP_NON_FINITE_WEIGHTS else max(done - 1, 0)
            snap_done, snap_params, snap_velocity, snap_state = \
                [snap for snap in snapshots if snap[0] <= target][-1]
            state = snap_state
            params_array[...] = snap_params
            velocity_array[...] = snap_velocity
            replayed = np.zeros(max(target - snap_done, 1), dtype=np.float64)
            errors = replayed
            position, first = snap_done, 0
            for index in range(len(phases)):
                end = first + phases[index][0]
                if position < min(end, target):
                    ran, _ = _run(kernels, net, ws, params, velocity, grad_array, x_data, T, &cfg,
                                  phases[index], <int64_t>(min(end, target) - position), &state,
                                  errors, <int64_t>(position - snap_done), False)
                    position += ran
                first = end
            if position != target or not np.array_equal(
                    replayed[:target - snap_done], log.array[snap_done:target]):
                # The replay went elsewhere (X or T changed during fit?): keep the snapshot.
                params_array[...] = snap_params
                velocity_array[...] = snap_velocity
                state = snap_state
                replay_failed, target = True, snap_done
            done = target
        if evaluate or status == BP_NON_FINITE or status == BP_NON_FINITE_WEIGHTS:
            final_error = _evaluate_in(kernels, net, ws, params, x_data, T, &cfg, &all_within)
        else:
            final_error, all_within = float("nan"), 0
    finally:
        if in_sweep:  # an exception inside a cut sweep: back to its start
            params_array[...], velocity_array[...], state = sweep_start
        if armed:
            bp_interrupt_uninstall()
        if ws != NULL:
            _free_workspace(kind, ws)
        if holder is not None:
            holder[0] = state
        if guard is not None:
            guard.release()
    if stopped_early:
        status_name = "stopped"
    else:
        status_name = STATUS_NAMES[status]
    if replay_failed:
        status_name += "_unverified"
    return (log.trimmed(done), int(done), status_name, float(final_error), bool(all_within),
            int(state))


cdef tuple _run(const bp_kernels *kernels, const bp_net *net, void *ws, floating[::1] params,
                floating[::1] velocity, grad_array, const floating *X,
                const floating[:, ::1] T, bp_train_config *cfg, phase, int64_t count,
                uint64_t *state, double[::1] errors, int64_t offset, bint stoppable):
    """`count` sweeps of `phase` from the current state; errors[offset:] gets theirs. X: the
    cases' first value (doubles if cfg.x_double). Returns (sweeps run, status)."""
    cdef bp_phase ph = _phase_struct(phase)
    cdef int64_t ran
    cdef int status = BP_RUNNING
    cdef floating[::1] grad = grad_array
    cdef const bp_stop *saved = cfg.stop
    if not stoppable:
        cfg.stop = NULL
    with nogil:
        if floating is float:
            ran = kernels.train_f32(net, <bp_workspace_f32 *>ws, &params[0], &velocity[0],
                                    &grad[0], X, &T[0, 0], cfg, &ph, count, state,
                                    &errors[offset], &status)
        else:
            ran = kernels.train_f64(net, <bp_workspace_f64 *>ws, &params[0], &velocity[0],
                                    &grad[0], X, &T[0, 0], cfg, &ph, count, state,
                                    &errors[offset], &status)
    cfg.stop = saved
    return ran, status


# -- populations --------------------------------------------------------------------------------

def population_train(topology, params, velocity, back, X, T, *, n_samples, shared_x, shared_t,
                     lr, momentum, weight_decay, stop_tol, n_sweeps, n_decayed, status, n_done,
                     errors=None, final_error=None, within=None, loss="sse",
                     dead_zone=(0.2, 0.8), reduction="sum", weighted=False, n_threads=1,
                     order=None):
    """Full-batch sweeps of a population of nets that population_lanes() accepts, members in the
    vector lanes
    (csrc/population.inc.c; bp_kernels.population_train says what each array is): the members
    `order` (int64 indices; None: all), grouped in that order. params and
    velocity are (n_members, n_params), back (n_members, 2 n_params); X and T one member's
    (n_samples, columns) if shared_x / shared_t, else every member's (n_members, n_samples,
    columns), T ending with the case weight if `weighted`; lr .. stop_tol float64 and n_sweeps
    int64 per member; status (int32) and n_done (int64) are updated in place; errors (n_members,
    >= max(n_sweeps)) float64 or None; with final_error (float64) and within (int32) given, only
    evaluates. Ctrl-C stops every member at the end of a sweep and raises KeyboardInterrupt."""
    return _population_train(topology, params, velocity, back, X.reshape(-1), T.reshape(-1),
                             n_samples, shared_x, shared_t, lr, momentum, weight_decay, stop_tol,
                             n_sweeps, n_decayed, status, n_done, errors, final_error, within,
                             loss, dead_zone, reduction, weighted, n_threads,
                             np.arange(params.shape[0], dtype=np.int64) if order is None
                             else order)


def _population_train(topology, floating[:, ::1] params, floating[:, ::1] velocity,
                      floating[:, ::1] back, const floating[::1] X, const floating[::1] T,
                      int64_t n_samples, bint shared_x, bint shared_t, const double[::1] lr,
                      const double[::1] momentum, const double[::1] weight_decay,
                      const double[::1] stop_tol, const int64_t[::1] n_sweeps,
                      int64_t n_decayed, int[::1] status, int64_t[::1] n_done, errors,
                      final_error, within, str loss, dead_zone, str reduction, bint weighted,
                      int n_threads, const int64_t[::1] order):
    cdef const bp_kernels *kernels = KERNELS
    cdef CompiledTopology compiled = _compiled(topology)
    cdef const bp_net *net = &compiled.net
    cdef int64_t n_members = params.shape[0], n_params = topology.n_params
    cdef int64_t x_cols = topology.n_input_cols, t_cols = topology.n_outputs + weighted
    cdef int64_t x_stride = 0 if shared_x else n_samples * x_cols
    cdef int64_t t_stride = 0 if shared_t else n_samples * t_cols
    cdef double[:, ::1] error_log
    cdef double[::1] final
    cdef int[::1] final_within
    cdef double *error_ptr = NULL
    cdef double *final_ptr = NULL
    cdef int *within_ptr = NULL
    cdef int64_t errors_ld = 0
    if not (kernels.population_lanes_f32(net, n_samples, weighted) if floating is float
            else kernels.population_lanes_f64(net, n_samples, weighted)):
        raise ValueError("population_train takes the nets population_lanes() accepts only")
    if (n_members == 0 or params.shape[1] != n_params or velocity.shape[0] != n_members or
            velocity.shape[1] != n_params or back.shape[0] != n_members or
            back.shape[1] != 2 * n_params):
        raise ValueError(f"params and velocity must be ({n_members} > 0, {n_params}) and back "
                         f"({n_members}, {2 * n_params})")
    if n_samples <= 0 or X.shape[0] != (1 if shared_x else n_members) * n_samples * x_cols or \
            T.shape[0] != (1 if shared_t else n_members) * n_samples * t_cols:
        raise ValueError(f"X and T must hold {n_samples} > 0 cases of {x_cols} and {t_cols} "
                         f"values (for each member unless shared)")
    for name, array in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay),
                        ("stop_tol", stop_tol), ("n_sweeps", n_sweeps), ("status", status),
                        ("n_done", n_done)):
        if array.shape[0] != n_members:
            raise ValueError(f"{name} must have one value per member ({n_members})")
    if not 0 <= n_decayed <= n_params:
        raise ValueError(f"n_decayed must be in [0, {n_params}], got {n_decayed}")
    if order.shape[0] == 0:
        return False
    # distinct: counted by bincount (np.unique's first call imports numpy.ma, 12 ms)
    if np.min(order) < 0 or np.max(order) >= n_members or \
            np.count_nonzero(np.bincount(order, minlength=n_members)) != order.shape[0]:
        raise ValueError(f"order must name distinct members in [0, {n_members})")
    if final_error is not None:
        final, final_within = final_error, within
        if final.shape[0] != n_members or final_within.shape[0] != n_members:
            raise ValueError("final_error and within must have one value per member")
        final_ptr, within_ptr = &final[0], &final_within[0]
    elif errors is not None:
        error_log = errors
        errors_ld = error_log.shape[1]
        if error_log.shape[0] != n_members or errors_ld < max(np.max(n_sweeps), 1):
            raise ValueError("errors must have a row per member, as long as its sweeps")
        error_ptr = &error_log[0, 0]
    cdef bp_members members
    members.lr, members.momentum = &lr[0], &momentum[0]
    members.weight_decay, members.stop_tol = &weight_decay[0], &stop_tol[0]
    members.n_sweeps, members.n_decayed = &n_sweeps[0], n_decayed
    cdef bp_train_config cfg = _config(n_samples, n_samples, False, loss, dead_zone, None,
                                       n_threads, reduction, weighted)
    cdef bp_stop stop
    cdef int outcome
    armed = _arm_interrupts(&stop)
    cfg.stop = &stop
    try:
        with nogil:
            if floating is float:
                outcome = kernels.population_train_f32(
                    net, &order[0], order.shape[0], &params[0, 0], &velocity[0, 0], &back[0, 0], &X[0], x_stride,
                    &T[0], t_stride, &cfg, &members, &status[0], &n_done[0], error_ptr, errors_ld,
                    final_ptr, within_ptr)
            else:
                outcome = kernels.population_train_f64(
                    net, &order[0], order.shape[0], &params[0, 0], &velocity[0, 0], &back[0, 0], &X[0], x_stride,
                    &T[0], t_stride, &cfg, &members, &status[0], &n_done[0], error_ptr, errors_ld,
                    final_ptr, within_ptr)
        if outcome < 0:
            raise MemoryError("bpfast could not allocate the buffers of a population's groups")
        if outcome == BP_STOPPED:
            _interrupted(&stop)  # raises KeyboardInterrupt, as a rule
        return outcome == BP_STOPPED
    finally:
        if armed:
            bp_interrupt_uninstall()


# -- the build ----------------------------------------------------------------------------------

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
    """Use the kernel variant `name` ("" for the best available) from calls made after this one,
    for every network. Meant for tests and benchmarks, or for BPFAST_ISA at import."""
    global KERNELS
    cdef const bp_kernels *chosen = bp_kernels_named(name.encode())
    if chosen == NULL:
        raise ValueError(f"kernel variant {name!r} is unknown or not supported by this CPU; "
                         f"choose one of {available_isas()}")
    KERNELS = chosen


def unit_function(x, name):
    """The kernels' vectorised unit function `name` (an activation other than softmax, or "log")
    of a float32 or float64 array (a copy)."""
    if name == "log":
        function = len(ACTIVATION_NAMES)
    elif name in ACTIVATION_NAMES and name != "softmax":
        function = ACTIVATION_NAMES.index(name)
    else:
        raise ValueError(f"no vector function {name!r}")
    out = np.array(x, copy=True, order="C")
    cdef float[::1] out32
    cdef double[::1] out64
    if out.size == 0:
        return out
    if out.dtype == np.float32:
        out32 = out.reshape(-1)
        KERNELS.unit_function_f32(&out32[0], out32.shape[0], function)
    else:
        out64 = out.reshape(-1)
        KERNELS.unit_function_f64(&out64[0], out64.shape[0], function)
    return out


def population_lanes(topology, dtype, n_samples, weighted):
    """Whether a population of `topology` in `dtype`, trained full batch on n_samples cases (with
    case weights if `weighted`), trains with its members in the vector lanes (population_train)."""
    cdef CompiledTopology compiled = _compiled(topology)
    if np.dtype(dtype) == np.float32:
        return bool(KERNELS.population_lanes_f32(&compiled.net, n_samples, weighted))
    return bool(KERNELS.population_lanes_f64(&compiled.net, n_samples, weighted))


def small_net(topology, dtype):
    """Whether training `topology` in `dtype` takes the whole-net loop (when SMALL_NETS is on)."""
    cdef CompiledTopology compiled = _compiled(topology)
    if np.dtype(dtype) == np.float32:
        return bool(KERNELS.small_net_f32(&compiled.net))
    return bool(KERNELS.small_net_f64(&compiled.net))


def _isa_from_environment():
    """BPFAST_ISA's variant (any case, spaces around it ignored), or the best for this CPU."""
    asked = os.environ.get("BPFAST_ISA", "")
    try:
        set_isa(asked.strip().lower())
    except ValueError:
        raise ImportError(f"BPFAST_ISA={asked!r}: not a kernel variant this CPU runs; set it to "
                          f"one of {available_isas()}, or unset it for the best") from None


_isa_from_environment()
