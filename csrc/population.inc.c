/* population.inc.c: full-batch training of a population of one small net with its members in the
 * vector lanes, for one (REAL, ISA); included by variant.inc.c in the serial instantiation (each
 * thread fills its lanes with members from a shared cursor, see api.inc.c: population_train).
 *
 * The k-th member of a group (member[k], any members of the population in any order) lives in
 * lane k of every vector: its parameter p is lane k of w[p]. For a tiny net one member cannot
 * fill a vector with work (the paper's 6-2-1 symmetry net has two hidden units), but VW members
 * can: every multiply-add is then a full vector's, whatever the net's number of cases. Every
 * case's inputs and targets are vectors over the lanes' members (broadcast where all share them,
 * a member's own put in its lane when it arrives); a pass then goes over blocks of
 * POP_BLOCK spans of POP_SPAN cases, unit by unit, a span's cases side by side for independent
 * work.
 *
 * For each member the operations are those of Network.fit's full-batch sweep on that member
 * alone, in the same order (kernels.inc.c, and small_nets.inc.c, which matches it): the forward
 * sums from the bias through the sources in order; the weight gradients of a narrow source (the
 * lane dot products) with case r of the sweep in accumulator r % VW (the lane the single net gives
 * it), the cases in order, the VW accumulators then summed in hsum's pairwise order, and the bias
 * gradients and the error likewise; those of a wide source (BP_WIDE_SOURCE: the broadcast tiles
 * over its batch-major copy) as one sum per weight over the cases in order; the update is
 * update_params_omp's. So a member ends where Network.fit would take it, bit for bit: the tests
 * compare the two.
 */

/* Cases a span takes side by side (each a vector over the members), for independent work: VW, and
   at least 8 (a 4-lane variant's spans of 4 left its few multiply-adds per unit and source
   waiting on their set-up); a multiple of VW. */
#define POP_SPAN (VW >= 8 ? VW : 8)
/* Spans a block takes (POP_BLOCK spans of POP_SPAN cases): the work of setting up each unit and
   each of its sources, and a narrow source's loads and stores of its sums, is shared by this many
   spans. 8 against 4, callgrind, W5: 40.1M -> 37.9M instructions (its 64 cases one block); 64
   family-trees nets of 300 sweeps on one thread, 9 alternating runs: 0.252 -> 0.218 s (median).
   But a unit's row of the block stays within 2 KB: a unit's sum reads every source's row, and
   12 to 20 rows of 2 KB stay in a core's L1 where rows of 8 KB (AVX-512, float32, 8 spans) went
   to L2. Zen 5, AVX-512, 64 nets of 1,000 sweeps on one thread (min of 3): 12-12-12 on 104
   cases 209 -> 133 ms (float64, 4 against 8 spans: 312 -> 248 ms), 20-12-20 332 -> 183 ms,
   family trees 0.46 s where 1 span took 0.47-0.51 s; 8-8-8 on 64 cases even; 1 span slower
   for 12-12-12 (161 ms). W5, whose units have 6 sources at most, lost a little: 0.122 -> 0.125 s
   (4 spans: 0.119 s). AVX2 and SSE2 kept 8 (4: 176 -> 190 and 401 -> 406 ms). */
#define POP_BLOCK MIN(8, 2048 / (POP_SPAN * VBYTES))
/* The nets that train in the lanes (population_lanes_fit): up to this many parameters and units
   per layer, and a group's buffers (population_group_vectors) up to this many bytes, for one
   core's caches. Measured on Zen 3 (AVX2), 256 family-trees nets (630 parameters, 104 cases,
   1,500 sweeps): 5.6-6.1 s on one thread in the lanes against 6.8-7.2 s as whole members (and
   6.1-6.9 s as a loop of Network.fit), 2.8-3.2 s against 4.0-4.1 s on two; 64 nets of 200 sweeps,
   lanes against whole members on one thread: 20-16-3 on 400 cases 216 against 367 ms, 30-30-3 on
   200 cases 317 against 358 ms, but 64-12-4 on 100 cases 174 against 131 ms (a single net's
   products of a 64-wide layer fill the register tiles; the baseline variant still gained there,
   234 against 296 ms). With AVX-512 a whole member runs about twice as fast as with AVX2, and
   the lanes keep their lead over fewer parameters. Zen 5, 64 nets of 200 sweeps on one thread,
   lanes against whole members, float32: family trees (104 cases, 4 of them held out) 91 against
   97 ms, 20-16-3 82 against 110 ms, but 30-30-3 176 against 131 ms; float64: 20-16-3 162 against
   185 ms, 8-8-8 to 20-12-20 (144 to 472 parameters) even, family trees 153 against 129 ms. */
#define POP_MAX_PARAMS (VBYTES < 64 ? 1024 : BP_DOUBLE ? 512 : 640)
#define POP_MAX_WIDTH 32
#define POP_MAX_GROUP_BYTES ((size_t)2 << 20)
/* Weights of a wide source whose sums over the cases run side by side (independent chains). */
#define WIDE_CHAINS 4
/* A narrow source's weight gradients: inputs whose sums run side by side, over this many of their
   VW accumulators each (registers: NARROW_INPUTS * NARROW_ACCS sums, an error signal, a
   product). */
#define NARROW_INPUTS 3
#define NARROW_ACCS (VW < 4 ? VW : 4)

/* What a group keeps for its VW members, in vectors: lane-major params and velocity, their copies
   at the start of the last sweep whose update was applied (a diverged member goes back there),
   the per-case accumulators of one gradient pass, a block's activations and error signals, and
   its cases as vectors over its members (every input and target, and case weight, of every case,
   feature-major, built once per call). */
static inline size_t FN(population_group_vectors)(const bp_net *net, const bp_train_config *cfg)
{
    int64_t units = 0;
    for (int l = 0; l < net->n_layers; l++)
        units += net->size[l];
    const int64_t n_out = net->size[net->n_layers - 1];
    return (size_t)(4 * net->n_params + VW * (net->n_params + n_out) +
                    2 * units * POP_BLOCK * POP_SPAN +
                    cfg->n_samples * (net->n_input_cols + n_out + cfg->weighted));
}

/* Whether a population of `net` on n_samples cases (with case weights if `weighted`) trains in the
   lanes: no ties (their gradients are gathered from the slots: whole members), every unit a
   function of its own total input (no softmax), and its sizes within the limits above. */
static inline int FN(population_lanes_fit)(const bp_net *net, int64_t n_samples, int weighted)
{
    if (net->share_runs || net->n_layers > SMALL_MAX_LAYERS || net->n_params > POP_MAX_PARAMS ||
        net->activation[net->n_layers - 1] == BP_SOFTMAX)
        return 0;
    for (int l = 0; l < net->n_layers; l++)
        if (net->size[l] > POP_MAX_WIDTH)
            return 0;
    bp_train_config cfg = {0};
    cfg.n_samples = n_samples;
    cfg.weighted = weighted;
    return FN(population_group_vectors)(net, &cfg) * sizeof(VREAL) <= POP_MAX_GROUP_BYTES;
}

/* The net's unit numbering: unit u of layer l is first_unit[l] + u. */
static inline int64_t FN(number_units)(const bp_net *net, int64_t *first_unit)
{
    int64_t units = 0;
    for (int l = 0; l < net->n_layers; l++) {
        first_unit[l] = units;
        units += net->size[l];
    }
    return units;
}

/* Cases r0 .. r0 + nb * span - 1 of a gradient pass (population_pass): nb spans of `span` <=
 * POP_SPAN cases, nb <= POP_BLOCK (span < POP_SPAN only for the last cases, nb = 1). Case
 * r0 + s * POP_SPAN + j goes to accumulator j % VW; the block at r0 = 0 starts the sums from
 * zero (no pass over acc to clear it first), the others add to them. Inlined with span =
 * POP_SPAN, so its loops over a span unroll and the sums being built stay in registers, and once
 * more for the last, shorter span. */
static ALWAYS_INLINE void FN(population_block)(
    const bp_net *net, const int64_t *first_unit, const VREAL *w, VREAL *acc, VREAL *act,
    VREAL *delta, VREAL *err, const VREAL *xv, const VREAL *tv, const bp_train_config *cfg,
    VREAL scale, VREAL tol, int gradients, VINT *outside, int64_t r0, int64_t nb,
    const int span)
{
    const int out = net->n_layers - 1;
    const int64_t n_out = net->size[out];
    const int64_t n = cfg->n_samples;
    const int out_activation = net->activation[out];
    const VREAL zero = FN(vsplat)(0);
/* unit u's values for the block's cases (span s at + s * POP_SPAN), and its error signals */
#define ACT(u) (act + (u) * POP_BLOCK * POP_SPAN)
#define DELTA(u) (delta + (u) * POP_BLOCK * POP_SPAN)
/* the block's values of the first unit of layer src, and the step to the next unit: an input's
   from xv (n apart), else ACT's */
#define SOURCE(src) (src < net->n_inputs ? xv + net->input_col[src] * n + r0 : ACT(first_unit[src]))
#define SOURCE_STEP(src) (src < net->n_inputs ? n : POP_BLOCK * POP_SPAN)
    for (int l = net->n_inputs; l < net->n_layers; l++)
        for (int64_t o = 0; o < net->size[l]; o++) {
            const VREAL start = net->bias_offset[l] >= 0 ? w[net->bias_offset[l] + o] : zero;
            VREAL *y_out = ACT(first_unit[l] + o);
            for (int64_t s = 0; s < nb; s++) {
                VREAL y[POP_SPAN] = {0}; /* (initialised: a short span's are never read) */
                EACH(j, span) y[j] = start;
                for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
                    const int src = net->src_layer[e];
                    const int64_t n_in = net->size[src], step = SOURCE_STEP(src);
                    const VREAL *wo = w + net->w_offset[e] + o * n_in;
                    const VREAL *x = SOURCE(src) + s * POP_SPAN;
                    for (int64_t c = 0; c < n_in; c++, x += step)
                        EACH(j, span) y[j] = VFMA(wo[c], x[j], y[j]);
                }
                EACH(j, span) y_out[s * POP_SPAN + j] = y[j];
                FN(vactivate_span)(y_out + s * POP_SPAN, span, net->activation[l]);
            }
        }
/* every output's error signals for the block, output_delta under `config` */
#define OUTPUT_DELTAS(config, activation)                                                        \
    for (int64_t o = 0; o < n_out; o++) {                                                        \
        const VREAL *y = ACT(first_unit[out] + o);                                               \
        VREAL *d = DELTA(first_unit[out] + o);                                                   \
        const VREAL *t = tv + o * n + r0, *weight = tv + n_out * n + r0;                         \
        for (int64_t s = 0; s < nb; s++)                                                         \
            EACH(j, span)                                                                        \
                d[s * POP_SPAN + j] = FN(output_delta)(                                          \
                    y[s * POP_SPAN + j], t[s * POP_SPAN + j],                                    \
                    (config)->weighted ? weight[s * POP_SPAN + j] : FN(vsplat)(1), VW, config,   \
                    activation, scale, tol, &err[o * VW + j % VW], outside);                     \
    }
    OUTPUT_DELTAS_DECIDED(cfg, out_activation)
#undef OUTPUT_DELTAS
    if (!gradients)
        return;
    for (int l = out; l >= net->n_inputs; l--) {
        const int64_t size = net->size[l];
        for (int64_t o = 0; o < size; o++) {
            VREAL *d = DELTA(first_unit[l] + o);
            if (l != out && net->activation[l] != BP_IDENTITY)
                for (int64_t s = 0; s < nb; s++)
                    FN(vderivative_times)(d + s * POP_SPAN, ACT(first_unit[l] + o) + s * POP_SPAN,
                                          span, net->activation[l]);
            /* each sum over the block's spans in registers, in the order of the cases */
            for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
                const int src = net->src_layer[e];
                const int64_t n_in = net->size[src], step = SOURCE_STEP(src);
                VREAL *sum = acc + (net->w_offset[e] + o * n_in) * VW;
                const VREAL *x = SOURCE(src);
                if (BP_WIDE_SOURCE(n_in)) { /* one sum per weight, in its first accumulator */
                    int64_t c = 0;
                    for (; c + WIDE_CHAINS <= n_in; c += WIDE_CHAINS) {
                        VREAL a[WIDE_CHAINS];
                        EACH(i, WIDE_CHAINS) a[i] = r0 == 0 ? zero : sum[(c + i) * VW];
                        for (int64_t s = 0; s < nb; s++)
                            EACH(j, span) EACH(i, WIDE_CHAINS)
                                a[i] = VFMA(d[s * POP_SPAN + j],
                                            x[(c + i) * step + s * POP_SPAN + j], a[i]);
                        EACH(i, WIDE_CHAINS) sum[(c + i) * VW] = a[i];
                    }
                    for (; c < n_in; c++) {
                        VREAL a = r0 == 0 ? zero : sum[c * VW];
                        for (int64_t s = 0; s < nb; s++)
                            EACH(j, span)
                                a = VFMA(d[s * POP_SPAN + j], x[c * step + s * POP_SPAN + j], a);
                        sum[c * VW] = a;
                    }
                    continue;
                }
                /* case j of a span adds to accumulator j % VW (the single net's lane for it):
                   NARROW_INPUTS inputs' sums side by side, over NARROW_ACCS of the accumulators
                   at a time, so that each error signal loaded serves NARROW_INPUTS products
                   (where one input at a time loaded it for each) */
                int64_t c = 0;
                if (span == POP_SPAN)
                    for (; c + NARROW_INPUTS <= n_in; c += NARROW_INPUTS)
                        EACH(kb, VW / NARROW_ACCS) {
                            VREAL a[NARROW_INPUTS][NARROW_ACCS];
                            VREAL *sums = sum + c * VW + kb * NARROW_ACCS;
                            const VREAL *xc = x + c * step;
                            EACH(i, NARROW_INPUTS) EACH(q, NARROW_ACCS)
                                a[i][q] = r0 == 0 ? zero : sums[i * VW + q];
                            for (int64_t s = 0; s < nb; s++)
                                EACH(j, POP_SPAN) if (j % VW / NARROW_ACCS == kb) {
                                    const VREAL dj = d[s * POP_SPAN + j];
                                    EACH(i, NARROW_INPUTS)
                                        a[i][j % NARROW_ACCS] = VFMA(
                                            dj, xc[i * step + s * POP_SPAN + j],
                                            a[i][j % NARROW_ACCS]);
                                }
                            EACH(i, NARROW_INPUTS) EACH(q, NARROW_ACCS)
                                sums[i * VW + q] = a[i][q];
                        }
                for (; c < n_in; c++) {
                    VREAL a[VW];
                    EACH(k, VW) a[k] = r0 == 0 ? zero : sum[c * VW + k];
                    for (int64_t s = 0; s < nb; s++)
                        EACH(j, span) a[j % VW] = VFMA(d[s * POP_SPAN + j],
                                                       x[c * step + s * POP_SPAN + j], a[j % VW]);
                    EACH(k, VW) sum[c * VW + k] = a[k];
                }
            }
            if (net->bias_offset[l] >= 0) {
                VREAL *sum = acc + (net->bias_offset[l] + o) * VW, a[VW];
                EACH(k, VW) a[k] = r0 == 0 ? zero : sum[k];
                for (int64_t s = 0; s < nb; s++)
                    EACH(j, span) a[j % VW] += d[s * POP_SPAN + j];
                EACH(k, VW) sum[k] = a[k];
            }
        }
        for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
            const int src = net->src_layer[e];
            if (src < net->n_inputs)
                continue;
            const int64_t n_in = net->size[src];
            const VREAL *we = w + net->w_offset[e];
            for (int64_t c = 0; c < n_in; c++) {
                VREAL *d_src = DELTA(first_unit[src] + c);
                for (int64_t s = 0; s < nb; s++) {
                    VREAL sum[POP_SPAN] = {0};
                    EACH(j, span) sum[j] = net->accumulate[e] ? d_src[s * POP_SPAN + j] : zero;
                    for (int64_t o = 0; o < size; o++) {
                        const VREAL *d = DELTA(first_unit[l] + o) + s * POP_SPAN;
                        EACH(j, span) sum[j] = VFMA(we[o * n_in + c], d[j], sum[j]);
                    }
                    EACH(j, span) d_src[s * POP_SPAN + j] = sum[j];
                }
            }
        }
    }
#undef ACT
#undef DELTA
#undef SOURCE
#undef SOURCE_STEP
}

/* sums[p * VW] = the sum of sums[p * VW .. p * VW + VW - 1] in hsum's pairwise order, p < count */
static inline void FN(pairwise_into_first)(VREAL *sums, int64_t count)
{
    for (int64_t p = 0; p < count; p++, sums += VW) {
        VREAL t[VW];
        EACH(k, VW) t[k] = sums[k];
        for (int width = VW / 2; width >= 1; width /= 2)
            EACH(i, width) t[i] += t[i + width];
        sums[0] = t[0];
    }
}

/* One full-batch gradient pass of the group at its lane-major params w: grad (in acc[p * VW],
   the per-case accumulators summed), error[k] = E of member k, *outside: the lanes with an
   output not within tol of its target. With gradients = 0 only the error and the test. */
static void FN(population_pass)(const bp_net *net, const VREAL *w, VREAL *acc, VREAL *act,
                                VREAL *delta, VREAL *err, const VREAL *xv, const VREAL *tv,
                                const bp_train_config *cfg, VREAL scale, VREAL tol,
                                int gradients, double *error, VINT *outside)
{
    const int64_t n_out = net->size[net->n_layers - 1];
    int64_t first_unit[SMALL_MAX_LAYERS];
    FN(number_units)(net, first_unit);
    const VREAL zero = FN(vsplat)(0);
    for (int64_t i = 0; i < n_out * VW; i++)
        err[i] = zero;
    VINT lanes_outside = {0};
    int64_t r0 = 0;
    for (int64_t nb; (nb = MIN(POP_BLOCK, (cfg->n_samples - r0) / POP_SPAN)) > 0;
         r0 += nb * POP_SPAN)
        FN(population_block)(net, first_unit, w, acc, act, delta, err, xv, tv, cfg, scale, tol,
                             gradients, &lanes_outside, r0, nb, POP_SPAN);
    if (r0 < cfg->n_samples)
        FN(population_block)(net, first_unit, w, acc, act, delta, err, xv, tv, cfg, scale, tol,
                             gradients, &lanes_outside, r0, 1, (int)(cfg->n_samples - r0));
    /* hsum's pairwise order over the accumulators of cases r % VW = 0 .. VW-1, into the first:
       the gradients of the narrow sources' weights and of the biases, and the errors */
    if (gradients)
        for (int l = net->n_inputs; l < net->n_layers; l++) {
            for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++)
                if (!BP_WIDE_SOURCE(net->size[net->src_layer[e]]))
                    FN(pairwise_into_first)(acc + net->w_offset[e] * VW,
                                            net->size[l] * net->size[net->src_layer[e]]);
            if (net->bias_offset[l] >= 0)
                FN(pairwise_into_first)(acc + net->bias_offset[l] * VW, net->size[l]);
        }
    FN(pairwise_into_first)(err, n_out);
    for (int k = 0; k < VW; k++) {
        double e = 0;
        for (int64_t o = 0; o < n_out; o++)
            e += LOSS_FACTOR(cfg->loss) * (double)err[o * VW][k];
        error[k] = e;
    }
    *outside = lanes_outside;
}

/* Lane k of out[col * n + r] = value `col` of case r of one member's rows (`cols` values each):
   a member's own data put in the lane it takes. */
static void FN(lane_vectors)(VREAL *out, const REAL *data, int64_t n, int64_t cols, int k)
{
    for (int64_t r = 0; r < n; r++)
        for (int64_t col = 0; col < cols; col++)
            out[col * n + r][k] = data[r * cols + col];
}

/* The next member of order[0 .. n_order) no thread has taken (*next: the shared cursor), or -1. */
static inline int64_t FN(take_member)(const int64_t *order, int64_t n_order, int64_t *next)
{
    const int64_t i = __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
    return i < n_order ? order[i] : -1;
}

/* One thread's share of population_train: members taken from order[0 .. n_order) through the
 * shared cursor *next, VW at a time in the lanes of `scratch` (population_group_vectors vectors).
 * A lane whose member stops (solved, diverged, or its sweeps run) takes the next member at once,
 * where a fixed group of VW members ran until its last one stopped (1,000 symmetry seeds with a
 * stop rule, 2 threads: 0.86 -> 0.79 s; Population.fit also packs the running members afresh for
 * each call). Every operation is lane by lane, so a member's lane, its neighbours and the thread
 * that takes it change nothing. With final_error it only evaluates. See
 * bp_kernels.population_train. */
static int FN(population_group)(const bp_net *net, const int64_t *order, int64_t n_order,
                                int64_t *next, REAL *params, REAL *velocity, REAL *back,
                                const REAL *X, int64_t x_stride, const REAL *T, int64_t t_stride,
                                const bp_train_config *cfg, const bp_members *members,
                                int *status, int64_t *n_done, double *errors, int64_t errors_ld,
                                double *final_error, int *within, VREAL *scratch)
{
    const int64_t n_params = net->n_params;
    const int64_t n_out = net->size[net->n_layers - 1];
    const int64_t n = cfg->n_samples, t_cols = n_out + cfg->weighted;
    int64_t first_unit[SMALL_MAX_LAYERS];
    const int64_t units = FN(number_units)(net, first_unit);
    VREAL *w = scratch, *v = w + n_params, *back_w = v + n_params, *back_v = back_w + n_params;
    VREAL *acc = back_v + n_params, *err = acc + n_params * VW, *act = err + n_out * VW;
    VREAL *delta = act + units * POP_BLOCK * POP_SPAN;
    VREAL *xv = delta + units * POP_BLOCK * POP_SPAN;
    VREAL *tv = xv + n * net->n_input_cols;
    const VREAL zero = FN(vsplat)(0);
    /* lanes without a member hold zeros (and stay finite once a member has left them) */
    for (int64_t p = 0; p < n_params; p++)
        w[p] = v[p] = back_w[p] = back_v[p] = zero;
    for (int64_t i = 0; i < n * net->n_input_cols; i++)
        xv[i] = x_stride == 0 ? FN(vsplat)(X[(i % n) * net->n_input_cols + i / n]) : zero;
    for (int64_t i = 0; i < n * t_cols; i++)
        tv[i] = t_stride == 0 ? FN(vsplat)(T[(i % n) * t_cols + i / n]) : zero;

    /* each lane's member (-1: none) and its settings */
    int64_t member[VW];
    VREAL lr = zero, momentum = zero, keep = zero, tol = zero, scale = zero;
    int64_t remaining[VW] = {0};
    /* each lane's sweeps done and sweeps of this call, written back when its member leaves:
       other threads' lanes hold the neighbouring members, and a write to their cache line every
       sweep cost the two-thread runs about a tenth of their time */
    int64_t done[VW] = {0}, sweep[VW] = {0};
    int stop_rule[VW] = {0};
    for (int k = 0; k < VW; k++)
        member[k] = -1;

/* Put the next member that has sweeps to run (final_error: the next member) in lane k, if any. */
#define TAKE_INTO(k)                                                                             \
    for (int64_t m; member[k] < 0 && (m = FN(take_member)(order, n_order, next)) >= 0;) {        \
        if (!final_error && (status[m] != BP_RUNNING || members->n_sweeps[m] <= 0))               \
            continue; /* left as it is */                                                        \
        member[k] = m;                                                                           \
        for (int64_t p = 0; p < n_params; p++) {                                                 \
            w[p][k] = params[m * n_params + p];                                                  \
            v[p][k] = velocity[m * n_params + p];                                                \
            back_w[p][k] = back[m * 2 * n_params + p];                                           \
            back_v[p][k] = back[m * 2 * n_params + n_params + p];                                \
        }                                                                                        \
        if (x_stride)                                                                            \
            FN(lane_vectors)(xv, X + m * x_stride, n, net->n_input_cols, k);                     \
        if (t_stride)                                                                            \
            FN(lane_vectors)(tv, T + m * t_stride, n, t_cols, k);                                \
        done[k] = n_done[m];                                                                     \
        sweep[k] = 0;                                                                            \
        lr[k] = (REAL)members->lr[m];                                                            \
        momentum[k] = (REAL)members->momentum[m];                                                \
        keep[k] = (REAL)(1.0 - members->weight_decay[m]);                                        \
        tol[k] = (REAL)members->stop_tol[m];                                                     \
        stop_rule[k] = members->stop_tol[m] > 0;                                                 \
        remaining[k] = members->n_sweeps[m];                                                     \
        /* gradient_scale's, from this member's own case weights */                              \
        double total = (double)n;                                                                \
        if (cfg->weighted) {                                                                     \
            const REAL *t = T + m * t_stride + n_out;                                            \
            total = 0;                                                                           \
            for (int64_t r = 0; r < n; r++)                                                      \
                total += t[r * (n_out + 1)];                                                     \
        }                                                                                        \
        scale[k] = total > 0 ? (REAL)(1.0 / total) : (REAL)0;                                    \
    }
/* Member of lane k back to the population's arrays; the lane is free. */
#define LEAVE(k)                                                                                 \
    do {                                                                                         \
        const int64_t m = member[k];                                                             \
        n_done[m] = done[k];                                                                     \
        for (int64_t p = 0; p < n_params; p++) {                                                 \
            params[m * n_params + p] = w[p][k];                                                  \
            velocity[m * n_params + p] = v[p][k];                                                \
            back[m * 2 * n_params + p] = back_w[p][k];                                           \
            back[m * 2 * n_params + n_params + p] = back_v[p][k];                                \
        }                                                                                        \
        member[k] = -1;                                                                          \
    } while (0)

    double error[VW];
    VINT outside;
    if (final_error) {
        for (;;) {
            int any = 0;
            for (int k = 0; k < VW; k++) {
                TAKE_INTO(k)
                any |= member[k] >= 0;
            }
            if (!any)
                return 0;
            FN(population_pass)(net, w, acc, act, delta, err, xv, tv, cfg, scale, tol, 0, error,
                                &outside);
            for (int k = 0; k < VW; k++)
                if (member[k] >= 0) {
                    final_error[member[k]] = error[k];
                    within[member[k]] = outside[k] == 0;
                    member[k] = -1;
                }
        }
    }

    int stopped = 0;
    for (;;) {
        VINT active = {0};
        int any = 0;
        for (int k = 0; k < VW; k++) {
            TAKE_INTO(k)
            if (member[k] >= 0) {
                active[k] = -1;
                any = 1;
            }
        }
        if (!any)
            break;
        if (bp_stop_requested(cfg->stop)) {
            stopped = 1;
            break;
        }
        FN(population_pass)(net, w, acc, act, delta, err, xv, tv, cfg, scale, tol, 1, error,
                            &outside);
        /* train_body's decisions, member by member: a non-finite error goes back to the start
           of the sweep before (whose update led here), a member within its tol has solved */
        for (int k = 0; k < VW; k++) {
            if (!active[k])
                continue;
            const int64_t m = member[k];
            if (errors)
                errors[m * errors_ld + sweep[k]] = error[k];
            sweep[k]++;
            if (!isfinite(error[k])) {
                status[m] = BP_NON_FINITE;
                if (done[k] > 0) {
                    done[k]--;
                    for (int64_t p = 0; p < n_params; p++) {
                        w[p][k] = back_w[p][k];
                        v[p][k] = back_v[p][k];
                    }
                }
            } else if (stop_rule[k] && outside[k] == 0) {
                status[m] = BP_SOLVED;
            }
            if (status[m] != BP_RUNNING) {
                active[k] = 0;
                remaining[k] = 0;
            }
        }
        /* update_params_omp's momentum rule, in the active lanes only */
        VINT bad = {0};
        for (int64_t p = 0; p < n_params; p++) {
            const VREAL g = acc[p * VW];
            const VREAL vp = momentum * v[p] - lr * g;
            VREAL wp = w[p] + vp;
            if (p < members->n_decayed)
                wp = wp * keep;
            back_w[p] = FN(vselect)(active, w[p], back_w[p]);
            back_v[p] = FN(vselect)(active, v[p], back_v[p]);
            w[p] = FN(vselect)(active, wp, w[p]);
            v[p] = FN(vselect)(active, vp, v[p]);
            bad |= active & ~(wp - wp == 0);
        }
        for (int k = 0; k < VW; k++) {
            if (member[k] < 0)
                continue;
            if (active[k]) {
                if (bad[k]) { /* back to this sweep's start */
                    status[member[k]] = BP_NON_FINITE_WEIGHTS;
                    remaining[k] = 0;
                    for (int64_t p = 0; p < n_params; p++) {
                        w[p][k] = back_w[p][k];
                        v[p][k] = back_v[p][k];
                    }
                } else {
                    done[k]++;
                    remaining[k]--;
                }
            }
            if (remaining[k] == 0)
                LEAVE(k);
        }
    }
    for (int k = 0; k < VW; k++) /* a requested stop: each member as it is */
        if (member[k] >= 0)
            LEAVE(k);
#undef TAKE_INTO
#undef LEAVE
    return stopped;
}
