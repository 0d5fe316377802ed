/* train.inc.c: the training driver for one precision, included by bpfast.c after kernels.inc.c.
 *
 * bp_train_* runs many sweeps in one call, inside one OpenMP parallel region: no Python and no
 * allocation per sweep. A sweep is one pass over the training cases: one update (full batch, the
 * paper) or one per mini-batch (online = mini-batches of one). Control decisions (the error, the
 * stop test, the next case order) are made by a single thread and read by all after a barrier, so
 * every thread runs the same loop.
 */

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SFX)
#define WS CAT(bp_workspace, SFX)

/* Rows [start, start + n_rows) of the current case order, bound as the batch. Returns the targets.
   Cases in their stored order are used in place; shuffled ones are gathered into the workspace. */
static const REAL *FN(bind_batch_omp)(const bp_net *net, WS *ws, const REAL *X, const REAL *T,
                                      int64_t start, int64_t n_rows, int shuffled)
{
    const int64_t n_cols = net->n_input_cols, n_out = net->size[net->n_layers - 1];
    if (!shuffled) {
#pragma omp single
        FN(bind_inputs)(net, ws, X + start * n_cols);
        return T + start * n_out;
    }
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n_rows; r++) {
        const int64_t i = ws->order[start + r];
        memcpy(ws->x_batch + r * n_cols, X + i * n_cols, (size_t)n_cols * sizeof(REAL));
        memcpy(ws->t_batch + r * n_out, T + i * n_out, (size_t)n_out * sizeof(REAL));
    }
#pragma omp single
    FN(bind_inputs)(net, ws, ws->x_batch);
    return ws->t_batch;
}

/* Error and stop test of the current weights over every case, one workspace-sized batch at a
   time, in stored order. Sets ws->error and ws->all_within. */
static void FN(evaluate_omp)(const bp_net *net, WS *ws, const REAL *params, const REAL *X,
                             const REAL *T, const bp_train_config *cfg)
{
    double error = 0;
    int all_within = 1;
    for (int64_t start = 0; start < cfg->n_samples; start += ws->max_rows) {
        const int64_t n_rows = MIN(ws->max_rows, cfg->n_samples - start);
        const REAL *T_rows = FN(bind_batch_omp)(net, ws, X, T, start, n_rows, 0);
        FN(forward_omp)(net, ws, params, n_rows);
        FN(output_error_omp)(net, ws, T_rows, n_rows, cfg);
        error += ws->error;
        all_within &= ws->all_within;
    }
    /* every thread has read the last batch's ws->error before one of them overwrites it */
#pragma omp barrier
#pragma omp single
    {
        ws->error = error;
        ws->all_within = all_within;
    }
}

/* splitmix64: a tiny, well-mixed generator whose whole state is one integer the caller keeps. */
static inline uint64_t FN(next_random)(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A fresh uniform case order, drawn from the identity each sweep (Fisher-Yates), so the order of
   sweep k depends on the generator state alone and a resumed run repeats it exactly. */
static void FN(shuffle_order)(WS *ws, uint64_t *rng_state)
{
    for (int64_t i = 0; i < ws->n_order; i++)
        ws->order[i] = i;
    for (int64_t i = ws->n_order - 1; i > 0; i--) {
        const int64_t j = (int64_t)(FN(next_random)(rng_state) % (uint64_t)(i + 1));
        const int64_t tmp = ws->order[i];
        ws->order[i] = ws->order[j];
        ws->order[j] = tmp;
    }
}

int64_t FN(bp_train)(const bp_net *net, WS *ws, REAL *params, REAL *velocity, REAL *grad,
                     const REAL *X, const REAL *T, const bp_train_config *cfg,
                     const bp_phase *phase, int64_t n_sweeps, uint64_t *rng_state,
                     double *errors, int *status)
{
    const int full_batch = cfg->batch_size >= cfg->n_samples;
    const int shuffled = !full_batch && cfg->shuffle;
    const int stop_rule = cfg->stop_tol > 0;
    int64_t n_done = 0;
    ws->status = BP_RUNNING;
#pragma omp parallel num_threads(cfg->n_threads) if (cfg->n_threads > 1)
    {
        for (int64_t sweep = 0; sweep < n_sweeps; sweep++) {
            if (full_batch) {
                const REAL *T_rows = FN(bind_batch_omp)(net, ws, X, T, 0, cfg->n_samples, 0);
                FN(loss_gradient_omp)(net, ws, grad, params, T_rows, cfg->n_samples, cfg);
#pragma omp single
                {
                    errors[sweep] = ws->error;
                    if (!isfinite(ws->error))
                        ws->status = BP_NON_FINITE;
                    else if (stop_rule && ws->all_within)
                        ws->status = BP_SOLVED;
                }
                if (ws->status != BP_RUNNING)
                    break;
                FN(momentum_update_omp)(params, velocity, grad, net->n_params, phase);
            } else {
                if (stop_rule) {
                    FN(evaluate_omp)(net, ws, params, X, T, cfg);
#pragma omp single
                    if (ws->all_within)
                        ws->status = BP_SOLVED;
                    if (ws->status != BP_RUNNING)
                        break;
                }
#pragma omp single
                {
                    if (shuffled)
                        FN(shuffle_order)(ws, rng_state);
                    errors[sweep] = 0;
                }
                for (int64_t start = 0; start < cfg->n_samples; start += cfg->batch_size) {
                    const int64_t n_rows = MIN(cfg->batch_size, cfg->n_samples - start);
                    const REAL *T_rows =
                        FN(bind_batch_omp)(net, ws, X, T, start, n_rows, shuffled);
                    FN(loss_gradient_omp)(net, ws, grad, params, T_rows, n_rows, cfg);
#pragma omp single
                    {
                        errors[sweep] += ws->error;
                        if (!isfinite(ws->error))
                            ws->status = BP_NON_FINITE;
                    }
                    if (ws->status != BP_RUNNING)
                        break;
                    FN(momentum_update_omp)(params, velocity, grad, net->n_params, phase);
                }
                if (ws->status != BP_RUNNING)
                    break;
            }
#pragma omp single
            n_done++;
        }
    }
    *status = ws->status;
    return n_done;
}

double FN(bp_evaluate)(const bp_net *net, WS *ws, const REAL *params, const REAL *X,
                       const REAL *T, const bp_train_config *cfg, int *all_within)
{
#pragma omp parallel num_threads(cfg->n_threads) if (cfg->n_threads > 1)
    FN(evaluate_omp)(net, ws, params, X, T, cfg);
    *all_within = ws->all_within;
    return ws->error;
}

void FN(bp_forward)(const bp_net *net, WS *ws, const REAL *params, const REAL *X, int64_t n_rows,
                    int n_threads)
{
    FN(bind_inputs)(net, ws, X);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
    FN(forward_omp)(net, ws, params, n_rows);
}

double FN(bp_loss_gradient)(const bp_net *net, WS *ws, REAL *grad, const REAL *params,
                            const REAL *X, const REAL *T, int64_t n_rows,
                            const bp_train_config *cfg, int *all_within)
{
    FN(bind_inputs)(net, ws, X);
#pragma omp parallel num_threads(cfg->n_threads) if (cfg->n_threads > 1)
    FN(loss_gradient_omp)(net, ws, grad, params, T, n_rows, cfg);
    *all_within = ws->all_within;
    return ws->error;
}

void FN(bp_momentum_update)(REAL *params, REAL *velocity, const REAL *grad, int64_t n_params,
                            const bp_phase *phase, int n_threads)
{
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
    FN(momentum_update_omp)(params, velocity, grad, n_params, phase);
}

/* One allocation holds every buffer, so a failure leaves nothing behind. */
WS *FN(bp_workspace_create)(const bp_net *net, int64_t max_rows, int64_t n_samples)
{
    const int64_t n_out = net->size[net->n_layers - 1];
    int64_t n_act = 0;
    for (int l = net->n_inputs; l < net->n_layers; l++)
        n_act += net->size[l];
    const size_t n_ptr = (size_t)net->n_layers;
    size_t bytes = sizeof(WS);
    bytes += 2 * n_ptr * sizeof(REAL *) + n_ptr * sizeof(int64_t);
    bytes += (size_t)max_rows * (sizeof(double) + sizeof(int));
    bytes += (size_t)n_samples * sizeof(int64_t);
    bytes += (size_t)max_rows * (size_t)(2 * n_act + net->n_input_cols + n_out) * sizeof(REAL);
    bytes += (8 + 2 * n_ptr) * 64; /* one cache line of alignment slack per buffer */
    char *arena = calloc(1, bytes);
    if (!arena)
        return NULL;
    char *p = arena;
#define TAKE(type, count) ((type *)take_aligned(&p, (size_t)(count) * sizeof(type)))
    WS *ws = TAKE(WS, 1);
    ws->arena = arena;
    ws->max_rows = max_rows;
    ws->y = TAKE(REAL *, n_ptr);
    ws->dy = TAKE(REAL *, n_ptr);
    ws->ld = TAKE(int64_t, n_ptr);
    ws->row_error = TAKE(double, max_rows);
    ws->row_within = TAKE(int, max_rows);
    ws->order = TAKE(int64_t, n_samples);
    ws->n_order = n_samples;
    for (int64_t i = 0; i < n_samples; i++)
        ws->order[i] = i;
    ws->x_batch = TAKE(REAL, max_rows * net->n_input_cols);
    ws->t_batch = TAKE(REAL, max_rows * n_out);
    for (int l = net->n_inputs; l < net->n_layers; l++) {
        ws->y[l] = TAKE(REAL, max_rows * net->size[l]);
        ws->dy[l] = TAKE(REAL, max_rows * net->size[l]);
        ws->ld[l] = net->size[l];
    }
#undef TAKE
    return ws;
}

void FN(bp_workspace_free)(WS *ws)
{
    if (ws)
        free(ws->arena);
}

const REAL *FN(bp_workspace_activations)(const WS *ws, int l, int64_t *ld)
{
    *ld = ws->ld[l];
    return ws->y[l];
}

#undef WS
#undef FN
#undef CAT
#undef CAT_
