/* train.inc.c: the training driver for one (REAL, ISA, PAR), included by variant.inc.c after
 * kernels.inc.c.
 *
 * train_body runs many sweeps in one call: no Python and no allocation per sweep. A sweep is one
 * pass over the training cases: one update (full batch, the paper) or one per mini-batch (online =
 * mini-batches of one). With PAR = 1 it runs inside one parallel region covering every sweep of the
 * call; control decisions (the error, the stop test, the next case order) are made by a single
 * thread and read by all after a barrier, so every thread runs the same loop.
 */

/* The dense arena the layers compute with: params itself, or (a shared net, see bp_net) each
   run of parameters copied into its slots. Each slot has one writer. */
static const REAL *FN(dense_params_omp)(const bp_net *net, WS *ws, const REAL *params)
{
    if (!net->share_runs)
        return params;
    OMP_FOR
    for (int64_t r = 0; r < net->n_share_runs; r++) {
        const int64_t *run = net->share_runs + 3 * r;
        memcpy(ws->dense_params + run[0], params + run[1], (size_t)run[2] * sizeof(REAL));
    }
    return ws->dense_params;
}

/* A shared net's gradient from its slots': each chunk of parameters (one thread) summed from the
   runs that reach into it, in run order (the same sums on any thread count), times share_scale. */
static void FN(gather_gradient_omp)(const bp_net *net, const WS *ws, REAL *grad)
{
    const int64_t chunk = net->share_chunk, n_chunks = FN(ceil_div)(net->n_params, chunk);
    OMP_FOR
    for (int64_t c = 0; c < n_chunks; c++) {
        const int64_t lo = c * chunk, hi = MIN(lo + chunk, net->n_params);
        memset(grad + lo, 0, (size_t)(hi - lo) * sizeof(REAL));
        for (int64_t i = net->share_chunk_start[c]; i < net->share_chunk_start[c + 1]; i++) {
            const int64_t *run = net->share_runs + 3 * net->share_chunk_runs[i];
            const int64_t first = MAX(lo, run[1]), end = MIN(hi, run[1] + run[2]);
            const REAL *BP_RESTRICT from = ws->dense_grad + run[0] + (first - run[1]);
            REAL *BP_RESTRICT to = grad + first;
            for (int64_t k = 0; k < end - first; k++)
                to[k] += from[k];
        }
        FN(mean_over_copies)(net, grad, lo, hi);
    }
}

/* grad, ws->error and ws->all_within over the bound batch: a recurrent net as one
   (recurrent.inc.c; dropout takes the unrolled net's layers), else by the whole-net loop of
   small_nets.inc.c on one thread where the call chose it (ws->small_net), else layer by layer;
   for a shared net on its dense arena, then gathered into the parameters. Every path ends in a
   barrier (train_body's decision after it counts on that). */
static void FN(batch_gradient_omp)(const bp_net *net, WS *ws, REAL *grad, const REAL *params,
                                   int64_t n_rows, const bp_train_config *cfg)
{
    if (ws->recurrent && cfg->dropout == 0) {
        FN(recurrent_gradient_omp)(net, ws, grad, params, n_rows, cfg);
        return;
    }
    const REAL *dense = FN(dense_params_omp)(net, ws, params);
    REAL *dense_grad = net->share_runs ? ws->dense_grad : grad;
    if (ws->small_net) {
        OMP_SINGLE
        FN(loss_gradient_small)(net, ws, dense_grad, dense, n_rows, cfg);
    } else {
        FN(loss_gradient_omp)(net, ws, dense_grad, dense, n_rows, cfg);
    }
    if (net->share_runs) /* both paths end in a barrier: every slot's gradient is written */
        FN(gather_gradient_omp)(net, ws, grad);
}

/* Values c .. c + VW - 1 of a case's row, which holds REALs, or doubles if from_double (rounded
   to REAL as a conversion of the whole array would round them). */
typedef double FN(vdouble) __attribute__((vector_size(VW * sizeof(double))));
static inline VREAL FN(load_cases)(const char *row, int64_t c, int from_double)
{
    if (!from_double)
        return FN(vload)((const REAL *)row + c);
    FN(vdouble) wide;
    memcpy(&wide, (const double *)row + c, sizeof wide);
    return __builtin_convertvector(wide, VREAL);
}

static inline REAL FN(case_value)(const char *row, int64_t c, int from_double)
{
    return from_double ? (REAL)((const double *)row)[c] : ((const REAL *)row)[c];
}

/* dst[c * ld + r] = the c-th of n_cols values of case r (row `order[r]`, or `start + r`, of src,
 * whose rows are `stride` long), for r < n_rows; zeros up to `lanes`. VW cases at a time, VW
 * columns at a time as a vector block transposed in registers (value by value, binding W3's
 * batches took 40% of the time of a 784-2-10 net's sweep). If rows_dst, the cases' values are
 * also copied there batch-major (rows_dst[r * ld_rows + c]), from the same loads: the copy a wide
 * input group's weight gradients read. Shuffled cases are rows scattered over the whole of X, each
 * a cache miss of its own, so the rows of the block after next are prefetched, a line of each per
 * step of VW columns. Prefetching all of the next block's lines at once instead made a fit bound
 * by its binding (batches of 200 float64 rows of 100) 1.3x slower on Zen 3 (session 17). No
 * barrier at the end (bind_rows_omp's single is the one). */
static void FN(transpose_rows_omp)(REAL *dst, int64_t ld, const REAL *src, int64_t stride,
                                   int64_t n_cols, int64_t start, int64_t n_rows,
                                   const int64_t *order, int64_t lanes, REAL *rows_dst,
                                   int64_t ld_rows, int from_double)
{
    /* from_double: src holds doubles (bp_train_config.x_double), rounded here */
    const char *base = (const char *)src;
    const int64_t size = from_double ? (int64_t)sizeof(double) : (int64_t)sizeof(REAL);
    int first_block = 1; /* of this thread's share */
    OMP_FOR_NOWAIT
    for (int64_t r0 = 0; r0 < n_rows; r0 += VW) {
        const int64_t rows = MIN(VW, n_rows - r0);
        const char *case_row[VW];
        for (int64_t r = 0; r < rows; r++)
            case_row[r] = base + (order ? order[r0 + r] : start + r0 + r) * stride * size;
        const char *ahead[2 * VW]; /* the rows two blocks ahead (and the next, at first) */
        int n_ahead = 0;
        if (order)
            for (int64_t r = r0 + (first_block ? VW : 2 * VW); r < MIN(r0 + 3 * VW, n_rows); r++)
                ahead[n_ahead++] = base + order[r] * stride * size;
        first_block = 0;
        int64_t c = 0;
        if (rows == VW) {
            for (; c + VW <= n_cols; c += VW) {
                for (int a = 0; a < n_ahead; a++)
                    for (int64_t byte = c * size; byte < (c + VW) * size; byte += 64)
                        __builtin_prefetch(ahead[a] + byte);
                VREAL block[VW];
                for (int r = 0; r < VW; r++)
                    block[r] = FN(load_cases)(case_row[r], c, from_double);
                if (rows_dst)
                    for (int r = 0; r < VW; r++)
                        FN(vstore)(rows_dst + (r0 + r) * ld_rows + c, block[r]);
                FN(transpose_block)(block);
                for (int j = 0; j < VW; j++)
                    FN(vstore)(dst + (c + j) * ld + r0, block[j]);
            }
            /* the last columns' lines, in the same steps of 64 bytes, and the row's last line
               (every 64th byte and the last touch every line of the row; a row of fewer than VW
               values, such as the targets', had only its last line prefetched before: the first
               of 60% of 40-byte rows was a miss) */
            for (int a = 0; a < n_ahead; a++) {
                for (int64_t byte = c * size; byte < n_cols * size; byte += 64)
                    __builtin_prefetch(ahead[a] + byte);
                __builtin_prefetch(ahead[a] + n_cols * size - 1);
            }
        }
        for (; c < n_cols; c++)
            for (int64_t r = 0; r < rows; r++) {
                const REAL value = FN(case_value)(case_row[r], c, from_double);
                dst[c * ld + r0 + r] = value;
                if (rows_dst)
                    rows_dst[(r0 + r) * ld_rows + c] = value;
            }
    }
    if (lanes > n_rows) {
        OMP_FOR_NOWAIT
        for (int64_t c = 0; c < n_cols; c++)
            for (int64_t r = n_rows; r < lanes; r++)
                dst[c * ld + r] = 0;
    }
}

/* Bind rows [start, start + n_rows) of the cases (through ws->order if `ordered`) as the batch:
 * copied feature-major into x_batch / t_batch (T's rows end with a case weight if `weighted`),
 * the padding lanes up to a whole vector zeroed. The workspace's rows then have this batch's
 * stride (ws->ld, bp_row_stride), not the largest batch's: laid out at the stride of the 8,192-row
 * forward chunks, batches of 200 trained issue 12's net 14-20% slower (session 15's results).
 * `whole`: called by bind_all_omp, which sets ws->bound_x itself. */
static void FN(bind_rows_omp)(const bp_net *net, WS *ws, const REAL *X, int x_double,
                              const REAL *T, int weighted, int64_t start, int64_t n_rows,
                              int ordered, int whole)
{
    const int64_t n_cols = net->n_input_cols, t_cols = net->size[net->n_layers - 1] + weighted;
    const int64_t ld = bp_row_stride(n_rows, (int64_t)sizeof(REAL));
    const int64_t lanes = FN(ceil_div)(n_rows, VW) * VW;
    const int64_t *order = ordered ? ws->order + start : NULL;
    /* one input group: its batch-major copy (if it is wide) is made with the transpose */
    REAL *rows_dst = net->n_inputs == 1 ? ws->y_rows[0] : NULL;
    FN(transpose_rows_omp)(ws->x_batch, ld, X, n_cols, n_cols, start, n_rows, order, lanes,
                           rows_dst, rows_dst ? ws->ld_rows[0] : 0, x_double);
    if (T) /* a forward pass has no targets */
        FN(transpose_rows_omp)(ws->t_batch, ld, T, t_cols, t_cols, start, n_rows, order, lanes,
                               NULL, 0, 0);
    /* else, batch-major copies of the wide input groups, for weight gradients */
    if (net->n_inputs > 1) {
        OMP_FOR_NOWAIT
        for (int64_t r = 0; r < n_rows; r++) {
            const int64_t row = (order ? order[r] : start + r) * n_cols;
            for (int g = 0; g < net->n_inputs; g++)
                if (ws->y_rows[g] && x_double)
                    for (int64_t c = 0; c < net->size[g]; c++)
                        ws->y_rows[g][r * ws->ld_rows[g] + c] =
                            (REAL)((const double *)X)[row + net->input_col[g] + c];
                else if (ws->y_rows[g])
                    memcpy(ws->y_rows[g] + r * ws->ld_rows[g], X + row + net->input_col[g],
                           (size_t)net->size[g] * sizeof(REAL));
        }
    }
    /* The loops above wait for no one: their threads write apart, and none reads ws->ld or
       ws->y. This single's barrier ends them all (three barriers a batch fewer). */
    OMP_SINGLE
    {
        ws->ld = ld;
        for (int g = 0; g < net->n_inputs; g++)
            ws->y[g] = ws->x_batch + (int64_t)net->input_col[g] * ld;
        /* not for bind_all_omp: with the loops above not waiting, its slowest thread may not
           have read bound_x yet (its own single sets it, after this barrier) */
        if (!whole)
            ws->bound_x = NULL;
    }
}

/* Bind every case at once (the workspace holds them all), unless they are bound already. */
static void FN(bind_all_omp)(const bp_net *net, WS *ws, const REAL *X, int x_double,
                             const REAL *T, int weighted, int64_t n_samples)
{
    if (ws->bound_x == X)
        return;
    FN(bind_rows_omp)(net, ws, X, x_double, T, weighted, 0, n_samples, 0, 1);
    OMP_SINGLE
    ws->bound_x = X;
}

/* Error and stop test of the current weights over every case, a workspace-sized batch at a time.
   Sets ws->error and ws->all_within. */
static void FN(evaluate_omp)(const bp_net *net, WS *ws, const REAL *params, const REAL *X,
                             const REAL *T, const bp_train_config *cfg)
{
    double error = 0;
    int all_within = 1;
    params = FN(dense_params_omp)(net, ws, params);
    for (int64_t start = 0; start < cfg->n_samples; start += ws->max_rows) {
        const int64_t n_rows = MIN(ws->max_rows, cfg->n_samples - start);
        if (n_rows == cfg->n_samples)
            FN(bind_all_omp)(net, ws, X, cfg->x_double, T, cfg->weighted, n_rows);
        else
            FN(bind_rows_omp)(net, ws, X, cfg->x_double, T, cfg->weighted, start, n_rows, 0,
                              0);
        FN(forward_omp)(net, ws, params, n_rows, 0, 0.0);
        FN(output_error_omp)(net, ws, n_rows, FN(ceil_div)(n_rows, VW) * VW, cfg);
        error += ws->error;
        all_within &= ws->all_within;
    }
    /* every thread has read the last batch's ws->error before one of them overwrites it */
    OMP_BARRIER
    OMP_SINGLE
    {
        ws->error = bp_stop_requested(ws->stop) ? NAN : error; /* tiles were skipped */
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

/* Under dropout, a fresh key for the next batch's masks, drawn from the shuffling generator. */
static void FN(next_dropout_key_omp)(WS *ws, const bp_train_config *cfg, uint64_t *rng_state)
{
    if (cfg->dropout > 0) {
        OMP_SINGLE /* its closing barrier: every thread sees the key */
        {
            ws->key_rng = *rng_state; /* a batch paused before its update draws it again */
            ws->dropout_key = FN(next_random)(rng_state);
        }
    }
}

/* Whether the bound batch's cases all have weight 0. Such a batch is held out whole, as if its
   cases were not in the data: no step (momentum, weight decay and Adam would move the weights on
   a zero gradient), no dropout key, no error. Every thread reads the same weights after the bind's
   barrier, so all take the same branch. */
static int FN(weightless_batch)(const bp_net *net, const WS *ws, const bp_train_config *cfg,
                                int64_t n_rows)
{
    if (!cfg->weighted)
        return 0;
    const REAL *weights = ws->t_batch + net->size[net->n_layers - 1] * ws->ld;
    for (int64_t r = 0; r < n_rows; r++)
        if (weights[r] != 0)
            return 0;
    return 1;
}

/* One thread decides whether the call stops here, for all (every thread then reads ws->status):
   on a requested stop (`stop`; BP_PAUSED if `pausable` and it is the deadline, not a Ctrl-C),
   else on `bad` (a status) if it is not BP_RUNNING; then, unless it pauses, adds ws->error to
   *error_sum if that is not NULL (a batch's error to its sweep's, in the same single). The
   barrier first: every thread has read the previous decision before this one may change it
   (`omp single` waits at its end, not at its start), and every thread's skipped tiles for a stop
   are behind it, so that the one deciding sees that stop. decide_after_barrier_omp: the same
   where every thread has just passed a barrier since it read the last decision. */
static void FN(decide_after_barrier_omp)(WS *ws, const bp_stop *stop, int bad, int pausable,
                                         double *error_sum)
{
    OMP_SINGLE
    {
        if (bp_stop_requested(stop))
            ws->status = pausable && !(stop->interruptible &&
                                       bp_interrupt_count() != stop->interrupts_seen)
                             ? BP_PAUSED
                             : BP_STOPPED;
        else if (bad != BP_RUNNING)
            ws->status = bad;
        if (error_sum && ws->status != BP_PAUSED)
            *error_sum += ws->error;
    }
}

static void FN(decide_omp)(WS *ws, const bp_stop *stop, int bad, int pausable,
                           double *error_sum)
{
    OMP_BARRIER
    FN(decide_after_barrier_omp)(ws, stop, bad, pausable, error_sum);
}

/* The phase's update (clipped if it asks), then one decision on whether it made a weight
   non-finite. */
static void FN(update_omp)(const bp_net *net, WS *ws, REAL *params, REAL *state,
                           const REAL *grad, const bp_phase *phase)
{
    if (phase->clip_norm > 0) {
        OMP_SINGLE /* its closing barrier publishes the scale */
        ws->grad_scale = FN(clip_scale)(grad, net->n_params, phase->clip_norm);
    }
    FN(update_params_omp)(params, state, grad, net->n_params, phase,
                          phase->clip_norm > 0 ? (REAL)ws->grad_scale : (REAL)1,
                          &ws->weights_non_finite);
    OMP_BARRIER /* every thread's flag is written, and Adam's count read, before one goes on */
    OMP_SINGLE
    {
        FN(count_update)(state, net->n_params, phase);
        if (ws->weights_non_finite)
            ws->status = BP_NON_FINITE_WEIGHTS;
    }
}

/* Up to n_sweeps sweeps of one phase; ws->n_done, ws->batches_run and ws->status say how it
 * went. cfg->stop is honoured between sweeps, and inside a sweep through ws->stop (set by the
 * caller only where that is safe): a full-batch sweep changes nothing before its update, and a
 * mini-batch sweep puts back its start from the copy the workspace keeps (BP_WS_SWEEP_START).
 * With cfg->max_batches, a mini-batch call returns once it has run that many batches, and its
 * deadline pauses it between two batches instead of abandoning the sweep: a sweep left
 * unfinished (BP_PAUSED) keeps its place (ws->in_sweep, ws->resume_at), and the next call goes
 * on from there, so that a run cut into such calls does exactly the work of one call (the
 * ThreadChooser tries threads on parts of a sweep: a fit of a few long sweeps has no other place
 * to). */
static void FN(train_body)(const bp_net *net, WS *ws, REAL *params, REAL *velocity, REAL *grad,
                           const REAL *X, const REAL *T, const bp_train_config *cfg,
                           const bp_phase *phase, int64_t n_sweeps, uint64_t *rng_state,
                           double *errors)
{
    const int full_batch = cfg->batch_size >= cfg->n_samples;
    const int shuffled = !full_batch && cfg->shuffle;
    const int stop_rule = cfg->stop_tol > 0;
    const int dropout = cfg->dropout > 0;
    const size_t arena_bytes = (size_t)net->n_params * sizeof(REAL);
    const size_t state_bytes = (size_t)BP_STATE_LENGTH(phase->rule, net->n_params) * sizeof(REAL);
    const int64_t limit = full_batch ? 0 : cfg->max_batches;
    /* the same in every thread (they all run the same loop), so no barrier decides them */
    int64_t batches = 0;
    int paused = 0;
    for (int64_t sweep = 0; sweep < n_sweeps; sweep++) {
        if (limit > 0 && batches == limit)
            break; /* between two sweeps: nothing to resume */
        /* (a paused sweep's stops are decided at its batches: a deadline there pauses it) */
        if (cfg->stop && !ws->in_sweep) {
            FN(decide_omp)(ws, cfg->stop, BP_RUNNING, 0, NULL);
            if (ws->status != BP_RUNNING)
                break;
        }
        if (full_batch) {
            if (dropout && stop_rule) { /* the stop test sees the whole net, not a dropout pass */
                FN(evaluate_omp)(net, ws, params, X, T, cfg);
                FN(decide_omp)(ws, ws->stop, ws->all_within ? BP_SOLVED : BP_RUNNING, 0,
                               NULL);
                if (ws->status != BP_RUNNING)
                    break;
            }
            if (dropout) {
                OMP_SINGLE /* a stop inside the sweep puts back the generator too */
                ws->start_rng = *rng_state;
            }
            FN(next_dropout_key_omp)(ws, cfg, rng_state);
            FN(bind_all_omp)(net, ws, X, cfg->x_double, T, cfg->weighted, cfg->n_samples);
            FN(batch_gradient_omp)(net, ws, grad, params, cfg->n_samples, cfg);
            OMP_SINGLE
            errors[sweep] = ws->error;
            FN(decide_omp)(ws, ws->stop, !isfinite(ws->error) ? BP_NON_FINITE
                               : !dropout && stop_rule && ws->all_within ? BP_SOLVED
                                                                         : BP_RUNNING,
                           0, NULL);
            if (ws->status == BP_STOPPED && dropout) {
                OMP_SINGLE
                *rng_state = ws->start_rng;
            }
            if (ws->status != BP_RUNNING)
                break;
            FN(update_omp)(net, ws, params, velocity, grad, phase);
            if (ws->status != BP_RUNNING)
                break;
        } else {
            /* a paused sweep goes on where it stopped (its start, order and error so far are
               kept); every thread reads its place before any barrier lets one change it */
            const int resume = ws->in_sweep;
            const int saved = ws->start_params != NULL;
            if (!resume) {
                if (stop_rule) {
                    FN(evaluate_omp)(net, ws, params, X, T, cfg);
                    FN(decide_omp)(ws, ws->stop, ws->all_within ? BP_SOLVED : BP_RUNNING, 0,
                                   NULL);
                    if (ws->status != BP_RUNNING)
                        break;
                }
                OMP_SINGLE
                {
                    if (saved) {
                        memcpy(ws->start_params, params, arena_bytes);
                        memcpy(ws->start_velocity, velocity, state_bytes);
                        ws->start_rng = *rng_state;
                    }
                    if (shuffled)
                        FN(shuffle_order)(ws, rng_state);
                    errors[sweep] = 0;
                }
            }
            int64_t start = resume ? ws->resume_at : 0;
            for (; start < cfg->n_samples; start += cfg->batch_size) {
                const int64_t n_rows = MIN(cfg->batch_size, cfg->n_samples - start);
                if (limit > 0 && batches == limit) {
                    paused = 1;
                    break;
                }
                /* no decision here: a stop requested since the last one makes this batch skip
                   its tiles and is decided after its gradient (one decision a batch, not two:
                   two barriers fewer) */
                FN(bind_rows_omp)(net, ws, X, cfg->x_double, T, cfg->weighted, start, n_rows,
                                  shuffled, 0);
                if (FN(weightless_batch)(net, ws, cfg, n_rows)) {
                    OMP_BARRIER /* every thread has read the weights before the next bind */
                    continue;
                }
                FN(next_dropout_key_omp)(ws, cfg, rng_state);
                FN(batch_gradient_omp)(net, ws, grad, params, n_rows, cfg);
                /* a stop during the batch may have skipped some of its tiles (skip_tile): the
                   batch is dropped. With a batch limit, a deadline pauses before it, and gives
                   back its dropout key, to be drawn again when it is run. The gradient ends in a
                   barrier (batch_gradient_omp), after the bind's, after every thread read the
                   last decision: none more before this one. */
                FN(decide_after_barrier_omp)(ws, ws->stop,
                                             isfinite(ws->error) ? BP_RUNNING : BP_NON_FINITE,
                                             limit > 0, &errors[sweep]);
                if (ws->status == BP_PAUSED) {
                    if (dropout) {
                        OMP_SINGLE
                        *rng_state = ws->key_rng;
                    }
                    break;
                }
                if (ws->status != BP_RUNNING)
                    break;
                FN(update_omp)(net, ws, params, velocity, grad, phase);
                batches++;
                if (ws->status != BP_RUNNING)
                    break;
            }
            /* the place of a pause, which may be before the sweep's first batch (every thread read
               in_sweep above, before this sweep's barriers); a deadline's pause is a status, the
               batch limit's a local decision */
            paused |= ws->status == BP_PAUSED;
            OMP_SINGLE
            {
                ws->in_sweep = paused;
                ws->resume_at = paused ? start : 0;
            }
            if (paused)
                break;
            if (ws->status == BP_STOPPED && saved) {
                OMP_SINGLE
                {
                    memcpy(params, ws->start_params, arena_bytes);
                    memcpy(velocity, ws->start_velocity, state_bytes);
                    *rng_state = ws->start_rng;
                }
            }
            if (ws->status != BP_RUNNING)
                break;
        }
        OMP_SINGLE
        ws->n_done++;
    }
    OMP_SINGLE /* nothing reads the status in here after this */
    {
        ws->batches_run = full_batch ? ws->n_done : batches;
        if (paused)
            ws->status = BP_PAUSED;
    }
}

static void FN(forward_body)(const bp_net *net, WS *ws, const REAL *params, const REAL *X,
                             int64_t n_rows)
{
    FN(bind_rows_omp)(net, ws, X, 0, NULL, 0, 0, n_rows, 0, 0);
    FN(forward_omp)(net, ws, FN(dense_params_omp)(net, ws, params), n_rows, 0, 0.0);
}

static void FN(loss_gradient_body)(const bp_net *net, WS *ws, REAL *grad, const REAL *params,
                                   const REAL *X, const REAL *T, int64_t n_rows,
                                   const bp_train_config *cfg)
{
    OMP_SINGLE
    ws->dropout_key = cfg->dropout_key;
    FN(bind_rows_omp)(net, ws, X, cfg->x_double, T, cfg->weighted, 0, n_rows, 0, 0);
    FN(batch_gradient_omp)(net, ws, grad, params, n_rows, cfg);
}
