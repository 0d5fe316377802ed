/* bpfast.h: the C interface of bpfast's compiled core.
 *
 * A network is a layered DAG (see `bp_net`): layers 0 .. n_inputs-1 are input groups (column
 * slices of one input matrix X), the rest are computed layers, each fed by one or more lower layers
 * through dense weight blocks. The last layer is the output. All weights and biases live in one
 * flat parameter arena: every weight block first (in layer, then source order), then every bias.
 *
 * Everything here is plain C: no Python, no global state, no exit(). Functions never fail on
 * their inputs (the Python wrapper validates them); the only failures are allocation (NULL) and
 * non-finite numbers (reported through a status code). float and double come from one source:
 * every numeric function exists with an _f32 and an _f64 suffix.
 */
#ifndef BPFAST_H
#define BPFAST_H

#include <stddef.h>
#include <stdint.h>

/* The unit functions and the losses. Each list is the one place in C that names them (their math:
 * units.inc.c); the Python side (bpfast/units.py) lists the same names in the same order, and a
 * test compares the two through bp_activation_name / bp_loss_name.
 *   softmax: output layers only, and only with cross_entropy (its dE/dx is then y - d).
 *   cross_entropy: -sum d ln y (softmax outputs) or -sum [d ln y + (1-d) ln(1-y)] (logistic
 *   outputs), y clipped to [eps, 1 - eps] in the error (not the gradient) as scikit-learn does. */
#define BP_ACTIVATIONS(X)                                                                        \
    X(BP_LOGISTIC, logistic) X(BP_TANH, tanh) X(BP_IDENTITY, identity) X(BP_RELU, relu)        \
    X(BP_LEAKY_RELU, leaky_relu) X(BP_SOFTMAX, softmax)
#define BP_LOSSES(X) X(BP_SSE, sse) X(BP_DEAD_ZONE, dead_zone) X(BP_CROSS_ENTROPY, cross_entropy)
#define BP_ENUM_ITEM(id, name) id,
enum bp_activation { BP_ACTIVATIONS(BP_ENUM_ITEM) BP_N_ACTIVATIONS };
enum bp_loss { BP_LOSSES(BP_ENUM_ITEM) BP_N_LOSSES };
#undef BP_ENUM_ITEM
/* leaky_relu's slope below zero (PyTorch's default). */
#define BP_LEAKY_SLOPE 0.01
/* The name of activation / loss i, or NULL past the last. */
const char *bp_activation_name(int i);
const char *bp_loss_name(int i);
/* Why a training call returned before its last sweep. BP_NON_FINITE: the error of a sweep was NaN
   or infinite (the weights it was measured at are the culprit's result); BP_NON_FINITE_WEIGHTS:
   an update made a weight or velocity NaN or infinite; BP_STOPPED: a stop was requested (Ctrl-C
   or the caller's deadline, see bp_stop) and the sweep in progress was abandoned, its start
   restored; BP_PAUSED: a mini-batch call with cfg->max_batches stopped between two batches of a
   sweep (its batches ran out, or its deadline passed), and the next train call on the same
   workspace goes on from there. */
enum bp_status {
    BP_RUNNING = 0, BP_SOLVED = 1, BP_NON_FINITE = 2, BP_NON_FINITE_WEIGHTS = 3, BP_STOPPED = 4,
    BP_PAUSED = 5
};

/* Workspace features (bp_workspace_create's `features`). */
enum bp_workspace_feature {
    BP_WS_TRAINING = 1,    /* gradient buffers and batch-major copies */
    BP_WS_SWEEP_START = 2, /* a copy of params and velocity at each mini-batch sweep's start, so a
                              stop inside a sweep can restore it */
    BP_WS_ADAM = 4,        /* ... where the velocity is Adam's state (BP_STATE_LENGTH) */
};

/* How a phase changes the weights. The optimiser's state (the "velocity" argument) is Δw(t-1) for
   momentum (n_params values), and [m | v | t] for Adam: first and second moments, then the count
   of updates made (2 n_params + 1). */
enum bp_rule { BP_MOMENTUM = 0, BP_ADAM = 1 };
#define BP_STATE_LENGTH(rule, n_params) ((rule) == BP_ADAM ? 2 * (n_params) + 1 : (n_params))

/* When a compiled call should give up early: on a SIGINT counted by bp_interrupt_count() after
   `interrupts_seen` (if `interruptible`), or once the monotonic clock passes `deadline` seconds
   (if > 0). Polled between batches and layers, and every few tiles inside a layer. */
typedef struct {
    int interruptible;
    uint64_t interrupts_seen;
    double deadline;
} bp_stop;

/* The topology. Arrays are owned by the caller and must outlive every call that uses them. */
typedef struct {
    int n_layers;              /* input groups + computed layers */
    int n_inputs;              /* layers [0, n_inputs) are input groups */
    int n_input_cols;          /* width of X: the sum of the input group sizes */
    const int *size;           /* [n_layers] units per layer */
    const int *activation;     /* [n_layers] enum bp_activation (ignored for inputs) */
    const int64_t *bias_offset;/* [n_layers] offset of the bias vector in the arena, -1: no bias */
    const int *input_col;      /* [n_inputs] first column of each input group in X */
    const int *src_start;      /* [n_layers + 1] layer l's edges: src_start[l] .. [l + 1] - 1 */
    const int *src_layer;      /* [n_edges] the lower layer an edge comes from */
    const int64_t *w_offset;   /* [n_edges] offset of the (size[l], size[src]) weight block */
    const int *accumulate;     /* [n_edges] 1 if a higher layer also feeds on src_layer, so the
                                  input gradient of this edge adds to one already written */
    int64_t n_params;          /* the parameters: weights then biases */
    /* Weight sharing. The layers compute on a dense arena of n_dense values laid out as above
       (w_offset and bias_offset index it). Without sharing (share_runs NULL) that arena is the
       parameters themselves and n_dense == n_params. With it, run r = share_runs[3r .. 3r + 2]
       = (slot, param, length) says that dense slots slot .. slot + length - 1 hold parameters
       param .. param + length - 1; slots in no run are absent connections (always 0). A
       parameter's gradient is the sum of its slots' gradients in run order, times
       share_scale[param] if share_scale is not NULL (1 / slots: the mean). The sums go by chunks
       of share_chunk parameters: chunk c's runs are share_chunk_runs[share_chunk_start[c] ..
       share_chunk_start[c + 1] - 1], in run order. */
    int64_t n_dense;
    int64_t n_share_runs;
    const int64_t *share_runs;       /* [3 n_share_runs] */
    int64_t share_chunk;
    const int64_t *share_chunk_start;/* [ceil(n_params / share_chunk) + 1] */
    const int64_t *share_chunk_runs;
    const double *share_scale;       /* [n_params] or NULL */
    /* NULL, or [n_edges]: edge e's block has present connections in rows row_start[e] ..
       row_end[e] - 1 only (the rest are absent), and the layers skip the others. */
    const int *row_start, *row_end;
    /* NULL, or: this net is a recurrent net unrolled for training (bpfast/recurrent.py, without
       output feedback), and training runs it as one (recurrent.inc.c) instead of layer by
       layer: the same forward values, its tied gradients summed over the steps in one product. */
    const struct bp_recurrence *recurrence;
} bp_net;

/* A recurrent net of n_inputs, n_hidden and n_outputs units run for n_steps steps, unrolled as
 * bpfast/recurrent.py lays it out: input group t is step t's inputs (columns t n_inputs ..),
 * output unit t n_outputs + o is output o at step t. Each matrix is stored once in the
 * parameters, row-major at its offset: W_in (n_hidden, n_inputs), W_rec (n_hidden, n_hidden),
 * W_out (n_outputs, n_hidden); the biases at b_hidden and b_output, or -1 without biases. */
typedef struct bp_recurrence {
    int n_steps, n_inputs, n_hidden, n_outputs;
    int hidden_activation, output_activation; /* enum bp_activation */
    int64_t w_in, w_rec, w_out, b_hidden, b_output;
} bp_recurrence;

/* How a training run presents the data. */
typedef struct {
    int64_t n_samples;
    int64_t batch_size;        /* n_samples: full-batch sweeps (the paper); 1: online */
    int shuffle;               /* reshuffle the cases every sweep (ignored for full batch) */
    int loss;                  /* enum bp_loss */
    double dead_zone_off;      /* BP_DEAD_ZONE: no error for an off target (d < 0.5) below this */
    double dead_zone_on;       /* ... and for an on target (d >= 0.5) above this */
    int mean;                  /* 1: gradients are of E / (cases in the batch); 0: of E (the paper).
                                  The error reported is E either way. */
    int weighted;              /* 1: T has one more column, each case's weight w >= 0: E sums
                                  w times each case's error; cases of weight 0 are also left out
                                  of the stop test */
    double stop_tol;           /* > 0: stop when every output is within stop_tol of its target */
    int n_threads;             /* threads for this run, already resolved and thresholded */
    const bp_stop *stop;       /* NULL: run to the end */
    int small_nets;            /* 1: tiny nets take one whole-net loop (same results, faster);
                                  0: always the layer-by-layer kernels (tests compare the two) */
    double dropout;            /* in [0, 1): while training, each hidden unit's output is dropped
                                  (set to 0) for a case with this probability, and kept ones are
                                  scaled by 1 / (1 - dropout) ("inverted" dropout); never in
                                  evaluate or forward */
    uint64_t dropout_key;      /* loss_gradient: the key of its dropout masks (train draws a key
                                  per batch from its rng_state instead). The mask of hidden unit
                                  u of layer l for the batch's b-th case is a hash of (key, l, u,
                                  b) (kernels.inc.c: dropout_keep), so it does not depend on the
                                  threads. */
    int x_double;              /* 1 (a float net only): X holds doubles, each rounded to float as
                                  its case is bound, as a float copy of X would give it, without
                                  that copy (a user's float64 data). T is always REAL. */
    int64_t max_batches;       /* > 0 (mini-batch train calls, with BP_WS_SWEEP_START): return
                                  after this many batches, BP_PAUSED if inside a sweep, and pause
                                  there too when the deadline of cfg->stop passes (a Ctrl-C still
                                  abandons the sweep); 0: no limit */
    int64_t *batches_run;      /* NULL, or where train puts the batches it ran */
} bp_train_config;

/* One phase of a schedule, applied for a number of sweeps. */
typedef struct {
    double lr;                 /* epsilon */
    double momentum;           /* alpha; Adam's beta1 */
    double weight_decay;       /* lambda: w <- (1 - lambda) w after every update */
    int64_t n_decayed;         /* decay params [0, n_decayed): the weights, or weights + biases */
    int rule;                  /* enum bp_rule */
    double beta2, epsilon;     /* Adam's second-moment decay and the guard of its denominator */
    double clip_norm;          /* > 0: the gradient is scaled down to this norm (the Euclidean norm
                                  of all of it) before an update whose gradient is longer */
} bp_phase;

/* Each member's settings for one population_train call, arrays of n_members: the momentum rule's
   lr, momentum and weight decay (of params [0, n_decayed)), the stop rule's tol (<= 0: none), and
   the sweeps to run in this call (0: leave the member as it is). */
typedef struct {
    const double *lr, *momentum, *weight_decay, *stop_tol;
    const int64_t *n_sweeps;
    int64_t n_decayed;
} bp_members;

#define BP_DECLARE(REAL, SFX)                                                                   \
    typedef struct bp_workspace_##SFX bp_workspace_##SFX;                                       \
    /* Buffers for batches of up to max_rows of n_samples cases, with `features` (enum          \
       bp_workspace_feature); NULL if out of memory. bp_workspace_bytes_: the bytes it takes. */ \
    bp_workspace_##SFX *bp_workspace_create_##SFX(const bp_net *net, int64_t max_rows,          \
                                                  int64_t n_samples, int features);             \
    size_t bp_workspace_bytes_##SFX(const bp_net *net, int64_t max_rows, int64_t n_samples,     \
                                    int features);                                              \
    void bp_workspace_free_##SFX(bp_workspace_##SFX *ws);                                       \
    /* Activations of layer l from the last forward pass, feature-major: unit u's value for     \
       case r is at [u * ld + r]. */                                                            \
    const REAL *bp_workspace_activations_##SFX(const bp_workspace_##SFX *ws, int l,             \
                                                int64_t *ld);

BP_DECLARE(float, f32)
BP_DECLARE(double, f64)
#undef BP_DECLARE

/* The compute entry points of one instruction set. Cases arrive row-major: X (n_rows,
 * n_input_cols), T (n_rows, n_outputs + cfg->weighted), C-contiguous.
 *   forward:          activations of every layer for n_rows cases (read them from the workspace);
 *                     returns 0, or BP_STOPPED if `stop` cut it short (the activations are then
 *                     incomplete)
 *   loss_gradient:    grad = dE/dparams summed over the cases; returns E; *all_within: whether
 *                     every output is within cfg->stop_tol of its target
 *   update:           one update of the phase's rule (kernels.inc.c: update_params_omp) to w
 *                     and its state; returns 1 if a weight (or an Adam moment) became NaN or
 *                     infinite, else 0
 *   train:            up to n_sweeps sweeps of one phase; errors[k] gets sweep k's error;
 *                     rng_state (the shuffling generator) is carried between calls; returns the
 *                     sweeps whose update was applied, *status why it stopped early
 *   evaluate:         E and the stop test of the current weights over every case (NaN if
 *                     cfg->stop cut it short)
 *   unit_function:    activation `function` (softmax excepted), or ln if it is BP_N_ACTIVATIONS,
 *                     vectorised, in place (for tests of its accuracy)
 *   small_net:        whether cfg->small_nets would send this net through the whole-net loop
 *   population_lanes: whether a population of this net, on n_samples cases (with case weights
 *                     if weighted), trains in the lanes (population_train)
 *   population_train: full-batch sweeps of members order[0 .. n_order) of a population of nets
 *                     of this topology (one that population_lanes accepts), VW at a time in the
 *                     vector lanes (population.inc.c), each exactly as `train` would take it
 *                     alone (so the caller may regroup them freely between calls). Member m's
 *                     params and velocity are rows m of params and velocity (n_members,
 *                     n_params); back (n_members, 2 n_params) keeps each member's params and
 *                     velocity at the start of its last updated sweep, across calls. X and T are
 *                     one member's (as for train) at X + m * x_stride, T + m * t_stride (stride
 *                     0: shared by all). status[m] (enum bp_status, BP_RUNNING to train) and
 *                     n_done[m] (the sweeps of this fit so far) are updated in place;
 *                     errors[m * errors_ld + k] (if not NULL) gets the error of the member's
 *                     k-th sweep of this call. A member whose error is non-finite goes back to
 *                     its previous sweep's start, one whose update made a weight non-finite to
 *                     this sweep's start, as Network.fit does. With final_error not NULL it only
 *                     evaluates: final_error[m] = E and within[m] = the stop test of
 *                     members->stop_tol. Each thread (cfg->n_threads) fills its lanes with the
 *                     members no thread has taken yet, a lane at a time. Returns 0, BP_STOPPED
 *                     if cfg->stop cut it short (each member at the end of a sweep), or -1 if
 *                     out of memory (nothing changed). */
#define BP_KERNEL_FIELDS(REAL, SFX)                                                              \
    int (*forward_##SFX)(const bp_net *net, bp_workspace_##SFX *ws, const REAL *params,         \
                         const REAL *X, int64_t n_rows, int n_threads, const bp_stop *stop);    \
    double (*loss_gradient_##SFX)(const bp_net *net, bp_workspace_##SFX *ws, REAL *grad,        \
                                  const REAL *params, const REAL *X, const REAL *T,             \
                                  int64_t n_rows, const bp_train_config *cfg, int *all_within); \
    int (*update_##SFX)(REAL *params, REAL *velocity, const REAL *grad, int64_t n_params,        \
                        const bp_phase *phase, int n_threads);                                   \
    int64_t (*train_##SFX)(const bp_net *net, bp_workspace_##SFX *ws, REAL *params,             \
                           REAL *velocity, REAL *grad, const REAL *X, const REAL *T,            \
                           const bp_train_config *cfg, const bp_phase *phase, int64_t n_sweeps, \
                           uint64_t *rng_state, double *errors, int *status);                  \
    double (*evaluate_##SFX)(const bp_net *net, bp_workspace_##SFX *ws, const REAL *params,     \
                             const REAL *X, const REAL *T, const bp_train_config *cfg,          \
                             int *all_within);                                                  \
    void (*unit_function_##SFX)(REAL *x, int64_t n, int function);                              \
    int (*small_net_##SFX)(const bp_net *net);                                                  \
    int (*population_lanes_##SFX)(const bp_net *net, int64_t n_samples, int weighted);          \
    int (*population_train_##SFX)(const bp_net *net, const int64_t *order, int64_t n_order,     \
                                  REAL *params, REAL *velocity, REAL *back, const REAL *X,      \
                                  int64_t x_stride,                                             \
                                  const REAL *T, int64_t t_stride, const bp_train_config *cfg,  \
                                  const bp_members *members, int *status, int64_t *n_done,      \
                                  double *errors, int64_t errors_ld, double *final_error,       \
                                  int *within);

typedef struct {
    const char *name; /* "baseline", "avx2" (AVX2 + FMA) or "avx512" */
    BP_KERNEL_FIELDS(float, f32)
    BP_KERNEL_FIELDS(double, f64)
} bp_kernels;
#undef BP_KERNEL_FIELDS

/* The kernels for an instruction set by name, or the best this CPU runs for NULL or "";
   NULL if the name is unknown or the CPU lacks it. */
const bp_kernels *bp_kernels_named(const char *name);

/* Build facts for bpfast.build_info(). */
int bp_openmp_enabled(void);
int bp_openmp_max_threads(void);
/* With OpenMP thread binding on (OMP_PROC_BIND, OMP_PLACES): the processors OpenMP counts for the
   process (the runtime has pinned the calling thread to one place, so its own affinity mask says
   1); 0 when threads are not bound or there is no OpenMP. */
int bp_openmp_bound_procs(void);

/* ---- the process around the core (runtime.c) ---------------------------------------------- */

/* Once, at import: registers the fork handler. */
void bp_runtime_init(void);
/* The threads a parallel region may really use instead of `requested`: 1 in a process forked
   after a parallel region had run (libgomp's thread pool does not survive fork(), and using it
   hangs). Records that parallel regions are in use when it returns more than 1. */
int bp_parallel_threads(int requested);
/* Whether this process was forked after a parallel region had run (so it runs on one thread). */
int bp_forked_after_parallel(void);
/* How many threads (counting the caller) could be started and run at once, trying up to
   `wanted`: a thread-creation failure inside OpenMP ends the process, so callers ask first. */
int bp_try_threads(int wanted);
/* A SIGINT handler that counts interrupts and chains to the one it replaced (Python's), so that
   compiled loops can notice Ctrl-C without the GIL. install returns 0 if it did not install (the
   current disposition is SIG_DFL or SIG_IGN); calls nest. Main thread only. */
int bp_interrupt_install(void);
void bp_interrupt_uninstall(void);
void bp_interrupt_rearm(void); /* after Python code that may have replaced the handler */
uint64_t bp_interrupt_count(void);
/* Seconds on the monotonic clock, for bp_stop.deadline. */
double bp_monotonic_seconds(void);
/* Whether `stop` asks to stop now. */
int bp_stop_requested(const bp_stop *stop);

#endif
