/* api.inc.c: the public entry points of one (REAL, ISA), included by variant.inc.c after the serial
 * (FNS) and parallel (FNP) instantiations of kernels.inc.c and train.inc.c. Each picks the serial
 * code for one thread, else opens one parallel region around the parallel code. */

/* The call's stop request, and no product block in which a thread saw it yet (product_omp) */
static inline void API(watch_stop)(WS *ws, const bp_stop *stop)
{
    ws->stop = stop;
    ws->stop_seen[0] = ws->stop_seen[1] = 0;
}

static int API(forward)(const bp_net *net, WS *ws, const REAL *params, const REAL *X,
                        int64_t n_rows, int n_threads, const bp_stop *stop)
{
    API(watch_stop)(ws, stop);
    n_threads = bp_parallel_threads(n_threads);
    if (n_threads > 1) {
#pragma omp parallel num_threads(n_threads)
        FNP(forward_body)(net, ws, params, X, n_rows);
    } else {
        FNS(forward_body)(net, ws, params, X, n_rows);
    }
    ws->stop = NULL;
    return bp_stop_requested(stop) ? BP_STOPPED : 0;
}

static double API(loss_gradient)(const bp_net *net, WS *ws, REAL *grad, const REAL *params,
                                 const REAL *X, const REAL *T, int64_t n_rows,
                                 const bp_train_config *cfg, int *all_within)
{
    const int n_threads = bp_parallel_threads(cfg->n_threads);
    API(watch_stop)(ws, NULL);
    ws->small_net = cfg->small_nets && cfg->dropout == 0 && FNS(small_net_fits)(net);
    if (n_threads > 1) {
#pragma omp parallel num_threads(n_threads)
        FNP(loss_gradient_body)(net, ws, grad, params, X, T, n_rows, cfg);
    } else {
        FNS(loss_gradient_body)(net, ws, grad, params, X, T, n_rows, cfg);
    }
    *all_within = ws->all_within;
    return ws->error;
}

static int API(update)(REAL *params, REAL *state, const REAL *grad, int64_t n_params,
                       const bp_phase *phase, int n_threads)
{
    int non_finite = 0;
    const REAL gscale = phase->clip_norm > 0 ? FNS(clip_scale)(grad, n_params, phase->clip_norm)
                                             : (REAL)1;
    n_threads = bp_parallel_threads(n_threads);
    if (n_threads > 1) {
#pragma omp parallel num_threads(n_threads)
        FNP(update_params_omp)(params, state, grad, n_params, phase, gscale, &non_finite);
    } else {
        FNS(update_params_omp)(params, state, grad, n_params, phase, gscale, &non_finite);
    }
    FNS(count_update)(state, n_params, phase);
    return non_finite;
}

static int64_t API(train)(const bp_net *net, WS *ws, REAL *params, REAL *velocity, REAL *grad,
                          const REAL *X, const REAL *T, const bp_train_config *cfg,
                          const bp_phase *phase, int64_t n_sweeps, uint64_t *rng_state,
                          double *errors, int *status)
{
    const int n_threads = bp_parallel_threads(cfg->n_threads);
    ws->n_done = 0;
    ws->status = BP_RUNNING;
    ws->weights_non_finite = 0;
    ws->small_net = cfg->small_nets && cfg->dropout == 0 && FNS(small_net_fits)(net);
    /* Stops inside a sweep only where nothing is lost (see train_body). */
    API(watch_stop)(ws, cfg->batch_size >= cfg->n_samples || ws->start_params ? cfg->stop : NULL);
    if (n_threads > 1) {
        /* the threads' lane views (kernels.inc.c: lane_view); without them, shared products */
        ws->view_ptrs = malloc((size_t)n_threads * 3 * (size_t)net->n_layers * sizeof(REAL *));
#pragma omp parallel num_threads(n_threads)
        FNP(train_body)(net, ws, params, velocity, grad, X, T, cfg, phase, n_sweeps, rng_state,
                        errors);
        free(ws->view_ptrs);
        ws->view_ptrs = NULL;
    } else {
        FNS(train_body)(net, ws, params, velocity, grad, X, T, cfg, phase, n_sweeps, rng_state,
                        errors);
    }
    ws->stop = NULL;
    *status = ws->status;
    if (cfg->batches_run)
        *cfg->batches_run = ws->batches_run;
    return ws->n_done;
}

static double API(evaluate)(const bp_net *net, WS *ws, const REAL *params, const REAL *X,
                            const REAL *T, const bp_train_config *cfg, int *all_within)
{
    const int n_threads = bp_parallel_threads(cfg->n_threads);
    API(watch_stop)(ws, cfg->stop);
    if (n_threads > 1) {
#pragma omp parallel num_threads(n_threads)
        FNP(evaluate_omp)(net, ws, params, X, T, cfg);
    } else {
        FNS(evaluate_omp)(net, ws, params, X, T, cfg);
    }
    ws->stop = NULL;
    *all_within = ws->all_within;
    return ws->error;
}

/* A unit function (an activation's number; softmax is not one), or ln for BP_N_ACTIVATIONS, on
   n values in place: exposed so tests can bound the vector math's error. */
static void API(unit_function)(REAL *x, int64_t n, int function)
{
    for (int64_t i = 0; i < n; i += VW) {
        VREAL v = {0};
        const int64_t count = MIN(VW, n - i);
        memcpy(&v, x + i, (size_t)count * sizeof(REAL));
        v = function == BP_N_ACTIVATIONS ? FNS(vlog)(v) : FNS(vactivate)(v, function);
        memcpy(x + i, &v, (size_t)count * sizeof(REAL));
    }
}

static int API(small_net)(const bp_net *net) { return FNS(small_net_fits)(net); }

static int API(population_lanes)(const bp_net *net, int64_t n_samples, int weighted)
{
    return FNS(population_lanes_fit)(net, n_samples, weighted);
}

static int API(population_train)(const bp_net *net, const int64_t *order, int64_t n_order,
                                 REAL *params, REAL *velocity, REAL *back, const REAL *X,
                                 int64_t x_stride, const REAL *T, int64_t t_stride,
                                 const bp_train_config *cfg, const bp_members *members,
                                 int *status, int64_t *n_done, double *errors, int64_t errors_ld,
                                 double *final_error, int *within)
{
    const int64_t n_groups = FNS(ceil_div)(n_order, VW);
    const int n_threads = (int)MIN((int64_t)bp_parallel_threads(cfg->n_threads), n_groups);
    const size_t vectors = FNS(population_group_vectors)(net, cfg);
    /* every thread's buffers first, so that running out of memory changes nothing; each thread's
       start 64 KiB past the last one's end. Back to back (a thread's weights and sums, written
       every sweep, right after the last thread's cases, only read), W5 on two threads took 0.086
       against 0.078 s with AVX-512 on Zen 5 (AVX2 even); a gap of 4 or 16 KiB gave back part of
       it, 32 KiB and more all of it. */
    const size_t stride = vectors + ((size_t)64 << 10) / sizeof(VREAL);
    void *block = malloc((size_t)MAX(n_threads, 1) * stride * sizeof(VREAL) + 64);
    if (!block)
        return -1;
    VREAL *scratch = (VREAL *)(((uintptr_t)block + 63) & ~(uintptr_t)63);
    int stopped = 0;
    int64_t next = 0; /* the members' cursor, shared by the threads: each lane takes the next */
#define GROUP(buffers)                                                                           \
    FNS(population_group)(net, order, n_order, &next, params, velocity, back, X, x_stride, T,    \
                          t_stride, cfg, members, status, n_done, errors, errors_ld,            \
                          final_error, within, buffers)
#ifdef _OPENMP
    if (n_threads > 1) {
#pragma omp parallel num_threads(n_threads) reduction(| : stopped)
        stopped |= GROUP(scratch + (size_t)omp_get_thread_num() * stride);
    } else
#endif
    {
        stopped = GROUP(scratch);
    }
#undef GROUP
    free(block);
    return stopped ? BP_STOPPED : 0;
}
