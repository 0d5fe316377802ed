/* small_nets.inc.c: the whole loss and gradient of a tiny net in one loop (the paper's symmetry,
 * XOR, encoder nets), for one (REAL, ISA, PAR); included by variant.inc.c after kernels.inc.c.
 *
 * For such nets the layer-by-layer kernels spend most of their time on calls, tile dispatch and
 * loop set-up around a few dozen multiply-adds. Here one function runs every layer forward, the
 * output error and every layer backward over a span of up to SPAN_VECTORS vectors of cases, span
 * after span, with the span's activations and errors and the gradient accumulators in ws->pack
 * (L1). Each unit works across the span's vectors, which are independent of each other.
 *
 * It performs exactly the operations of kernels.inc.c in the same order for every value (the
 * forward sums from the bias through the sources in order; gradients as lane-wise sums over the
 * vectors of cases in order, then the same pairwise lane sum; input gradients through the
 * consumers in the same order), so it gives the same bits as the general kernels: the tests run
 * both and compare. That holds for nets whose every source is narrow (the general kernels take the
 * lane dot-product path for all of their weight gradients), which small_net_fits checks.
 */

#define SMALL_MAX_PARAMS 256
#define SMALL_MAX_UNITS 64
#define SMALL_MAX_LAYERS 16
/* Vectors of cases per span: enough independent work per unit to hide the latency of the unit
   function (a chain of ~20 operations), few enough for a unit's sums over the span to stay in
   registers (16 of them on SSE2 and AVX2). The sums over the cases go vector after vector in
   order whatever the span, so it changes no result. */
#define SPAN_VECTORS 8
/* Weights whose gradient sums over a span run side by side (independent chains). */
#define GRAD_CHAINS 4

/* Whether `net` takes this path: few parameters, units and layers, every source narrow, and
   every unit a function of its own total input (no softmax). */
static inline int FN(small_net_fits)(const bp_net *net)
{
    if (net->n_dense > SMALL_MAX_PARAMS || net->n_layers > SMALL_MAX_LAYERS ||
        net->activation[net->n_layers - 1] == BP_SOFTMAX)
        return 0;
    int64_t units = 0;
    for (int l = 0; l < net->n_layers; l++) {
        units += net->size[l];
        if (l < net->n_layers - 1 && BP_WIDE_SOURCE(net->size[l]))
            return 0;
    }
    /* the buffers of loss_gradient_small in ws->pack */
    return units <= SMALL_MAX_UNITS &&
           (size_t)(2 * units * SPAN_VECTORS + net->n_dense + net->size[net->n_layers - 1]) *
                   sizeof(VREAL) <= BP_PACK_BYTES;
}

/* One span of `span` <= SPAN_VECTORS vectors of cases from lane lane0 of the bound batch (of
 * n_rows): every layer forward, the output error (into err_sum, *outside) and every layer backward
 * (the gradients into gacc), with the span's activations and errors in act and delta. Inlined with
 * span = SPAN_VECTORS, so that its loops over the span unroll and the sums being built stay in
 * registers, and once more for a last, shorter span. */
static ALWAYS_INLINE void FN(small_span)(const bp_net *net, const WS *ws, const REAL *params,
                                         const int64_t *first_unit, VREAL *act, VREAL *delta,
                                         VREAL *gacc, VREAL *err_sum, int64_t n_rows,
                                         int64_t lane0, const bp_train_config *cfg, VREAL scale,
                                         VREAL tol, VINT *outside, const int span)
{
    const int out = net->n_layers - 1;
    const int64_t n_out = net->size[out], ld = ws->ld;
    const int out_activation = net->activation[out];
    const REAL *weights = cfg->weighted ? ws->t_batch + n_out * ld : NULL;
#define ACT(u) (act + (u) * SPAN_VECTORS)
#define DELTA(u) (delta + (u) * SPAN_VECTORS)
/* the span's values of the first unit of layer src, and the step (in REALs) to the next unit: an
   input group's read where the batch is bound, else ACT's */
#define SOURCE(src) (src < net->n_inputs ? ws->y[src] + lane0 : (const REAL *)ACT(first_unit[src]))
#define SOURCE_STEP(src) (src < net->n_inputs ? ld : SPAN_VECTORS * VW)
    /* forward: layer_forward_omp's tiles, one unit at a time */
    for (int l = net->n_inputs; l < net->n_layers; l++) {
        const REAL *bias = net->bias_offset[l] >= 0 ? params + net->bias_offset[l] : NULL;
        for (int64_t o = 0; o < net->size[l]; o++) {
            VREAL y[SPAN_VECTORS] = {0}; /* (initialised: a short span's are never read) */
            EACH(j, span) y[j] = FN(vsplat)(bias ? bias[o] : (REAL)0);
            for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
                const int src = net->src_layer[e];
                const int64_t n_in = net->size[src], step = SOURCE_STEP(src);
                const REAL *w = params + net->w_offset[e] + o * n_in, *x = SOURCE(src);
                for (int64_t c = 0; c < n_in; c++, x += step) {
                    const VREAL wc = FN(vsplat)(w[c]);
                    EACH(j, span) y[j] = VFMA(wc, FN(vload)(x + j * VW), y[j]);
                }
            }
            VREAL *y_out = ACT(first_unit[l] + o);
            EACH(j, span) y_out[j] = y[j];
            FN(vactivate_span)(y_out, span, net->activation[l]);
        }
    }
    /* the output error: output_error_omp for these vectors */
#define OUTPUT_DELTAS(config, activation)                                                        \
    for (int64_t o = 0; o < n_out; o++) {                                                        \
        const VREAL *y = ACT(first_unit[out] + o);                                               \
        VREAL *d = DELTA(first_unit[out] + o);                                                   \
        VREAL sum = err_sum[o];                                                                  \
        EACH(j, span) {                                                                          \
            const int64_t lane = lane0 + j * VW;                                                 \
            const VREAL w = weights ? FN(vload)(weights + lane) : FN(vsplat)(1);                 \
            d[j] = FN(output_delta)(y[j], FN(vload)(ws->t_batch + o * ld + lane), w,             \
                                    n_rows - lane, config, activation, scale, tol, &sum,         \
                                    outside);                                                    \
        }                                                                                        \
        err_sum[o] = sum;                                                                        \
    }
    OUTPUT_DELTAS_DECIDED(cfg, out_activation)
#undef OUTPUT_DELTAS
    /* backward, highest layer first: layer_activation_backward_omp,
       layer_backward_weights_omp (the dot path) and layer_backward_inputs_omp */
    for (int l = out; l >= net->n_inputs; l--) {
        const int64_t n = net->size[l];
        if (l != out && net->activation[l] != BP_IDENTITY)
            for (int64_t o = 0; o < n; o++)
                FN(vderivative_times)(DELTA(first_unit[l] + o), ACT(first_unit[l] + o), span,
                                      net->activation[l]);
        /* each weight's sum lane-wise over the span's vectors in order, GRAD_CHAINS weights side
           by side */
        for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
            const int src = net->src_layer[e];
            const int64_t n_in = net->size[src], step = SOURCE_STEP(src);
            for (int64_t o = 0; o < n; o++) {
                const VREAL *d = DELTA(first_unit[l] + o);
                const REAL *x = SOURCE(src);
                VREAL *g = gacc + net->w_offset[e] + o * n_in;
                int64_t c = 0;
                for (; c + GRAD_CHAINS <= n_in; c += GRAD_CHAINS) {
                    VREAL a[GRAD_CHAINS];
                    EACH(i, GRAD_CHAINS) a[i] = g[c + i];
                    EACH(j, span) EACH(i, GRAD_CHAINS)
                        a[i] = VFMA(d[j], FN(vload)(x + (c + i) * step + j * VW), a[i]);
                    EACH(i, GRAD_CHAINS) g[c + i] = a[i];
                }
                for (; c < n_in; c++) {
                    VREAL a = g[c];
                    EACH(j, span) a = VFMA(d[j], FN(vload)(x + c * step + j * VW), a);
                    g[c] = a;
                }
            }
        }
        if (net->bias_offset[l] >= 0)
            for (int64_t o = 0; o < n; o++) {
                const VREAL *d = DELTA(first_unit[l] + o);
                VREAL sum = gacc[net->bias_offset[l] + o];
                EACH(j, span) sum += d[j];
                gacc[net->bias_offset[l] + o] = sum;
            }
        for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
            const int src = net->src_layer[e];
            if (src < net->n_inputs)
                continue;
            const int64_t n_in = net->size[src];
            const REAL *w = params + net->w_offset[e];
            for (int64_t c = 0; c < n_in; c++) {
                VREAL *d_src = DELTA(first_unit[src] + c);
                VREAL sum[SPAN_VECTORS] = {0}; /* (initialised: a short span's are never read) */
                EACH(j, span) sum[j] = net->accumulate[e] ? d_src[j] : FN(vsplat)(0);
                for (int64_t o = 0; o < n; o++) {
                    const VREAL wo = FN(vsplat)(w[o * n_in + c]);
                    const VREAL *d = DELTA(first_unit[l] + o);
                    EACH(j, span) sum[j] = VFMA(wo, d[j], sum[j]);
                }
                EACH(j, span) d_src[j] = sum[j];
            }
        }
    }
#undef ACT
#undef DELTA
#undef SOURCE
#undef SOURCE_STEP
}

/* loss_gradient_omp for a net that small_net_fits: grad, ws->error, ws->all_within over the bound
   batch of n_rows, SPAN_VECTORS vectors of cases at a time, every layer of them before the next.
   One thread. */
static void FN(loss_gradient_small)(const bp_net *net, WS *ws, REAL *grad, const REAL *params,
                                    int64_t n_rows, const bp_train_config *cfg)
{
    const int out = net->n_layers - 1;
    const int64_t n_out = net->size[out], n_vectors = FN(ceil_div)(n_rows, VW);
    int64_t first_unit[SMALL_MAX_LAYERS], units = 0;
    for (int l = 0; l < net->n_layers; l++) {
        first_unit[l] = units;
        units += net->size[l];
    }
    /* act[u * SPAN_VECTORS + j]: unit u's output for vector j of the span; delta likewise */
    VREAL *act = (VREAL *)ws->pack;
    VREAL *delta = act + units * SPAN_VECTORS;  /* dE/dx (dE/dy while it accumulates) */
    VREAL *gacc = delta + units * SPAN_VECTORS; /* [n_dense] lane-wise gradient sums */
    VREAL *err_sum = gacc + net->n_dense;       /* [n_out] lane-wise squared-error sums */
    for (int64_t p = 0; p < net->n_dense; p++)
        gacc[p] = FN(vsplat)(0);
    for (int64_t o = 0; o < n_out; o++)
        err_sum[o] = FN(vsplat)(0);
    const REAL *weights = cfg->weighted ? ws->t_batch + n_out * ws->ld : NULL;
    const VREAL scale = FN(vsplat)(FN(gradient_scale)(weights, n_rows, cfg));
    const VREAL tol = FN(vsplat)((REAL)cfg->stop_tol);
    VINT outside = {0};
    int64_t v0 = 0;
    for (; v0 + SPAN_VECTORS <= n_vectors; v0 += SPAN_VECTORS)
        FN(small_span)(net, ws, params, first_unit, act, delta, gacc, err_sum, n_rows, v0 * VW,
                       cfg, scale, tol, &outside, SPAN_VECTORS);
    if (v0 < n_vectors)
        FN(small_span)(net, ws, params, first_unit, act, delta, gacc, err_sum, n_rows, v0 * VW,
                       cfg, scale, tol, &outside, (int)(n_vectors - v0));
    for (int64_t p = 0; p < net->n_dense; p++)
        grad[p] = FN(hsum)(gacc[p]);
    double error = 0;
    for (int64_t o = 0; o < n_out; o++)
        error += LOSS_FACTOR(cfg->loss) * (double)FN(hsum)(err_sum[o]);
    int within = 1;
    for (int i = 0; i < VW; i++)
        within &= outside[i] == 0;
    ws->error = error;
    ws->all_within = within;
}
