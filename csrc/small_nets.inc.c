/* small_nets.inc.c: the whole loss and gradient of a tiny net in one loop (the paper's symmetry,
 * XOR, encoder nets), for one (REAL, ISA, PAR); included by variant.inc.c after kernels.inc.c.
 *
 * For such nets the layer-by-layer kernels spend most of their time on calls, tile dispatch and
 * loop set-up around a few dozen multiply-adds. Here one pass over the batch, a vector of cases at
 * a time, runs every layer forward, the output error, and every layer backward, with the
 * activations, errors and gradient accumulators of that vector in ws->pack (L1).
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

/* Whether `net` takes this path: few parameters, units and layers, every source narrow, and the
   per-vector buffers (activations, errors, gradient accumulators) fit ws->pack. */
static inline int FN(small_net_fits)(const bp_net *net)
{
    if (net->n_params > SMALL_MAX_PARAMS || net->n_layers > SMALL_MAX_LAYERS)
        return 0;
    int64_t units = 0;
    for (int l = 0; l < net->n_layers; l++) {
        units += net->size[l];
        if (l < net->n_layers - 1 && BP_WIDE_SOURCE(net->size[l]))
            return 0;
    }
    return units <= SMALL_MAX_UNITS &&
           (size_t)(2 * units + net->n_params + net->size[net->n_layers - 1]) * sizeof(VREAL) <=
               BP_PACK_BYTES;
}

/* loss_gradient_omp for a net that small_net_fits: grad, ws->error, ws->all_within over the bound
   batch of n_rows. One thread. */
static void FN(loss_gradient_small)(const bp_net *net, WS *ws, REAL *grad, const REAL *params,
                                    int64_t n_rows, const bp_train_config *cfg)
{
    const int out = net->n_layers - 1;
    const int64_t n_out = net->size[out], ld = ws->ld;
    const int64_t lanes = FN(ceil_div)(n_rows, VW) * VW;
    int64_t first_unit[SMALL_MAX_LAYERS], units = 0;
    for (int l = 0; l < net->n_layers; l++) {
        first_unit[l] = units;
        units += net->size[l];
    }
    VREAL *act = (VREAL *)ws->pack;   /* [units] this vector's outputs of every unit */
    VREAL *delta = act + units;       /* [units] dE/dx (dE/dy while it accumulates) */
    VREAL *gacc = delta + units;      /* [n_params] lane-wise gradient sums */
    VREAL *err_sum = gacc + net->n_params; /* [n_out] lane-wise squared-error sums */
    for (int64_t p = 0; p < net->n_params; p++)
        gacc[p] = FN(vsplat)(0);
    for (int64_t o = 0; o < n_out; o++)
        err_sum[o] = FN(vsplat)(0);
    const int dead_zone = cfg->loss == BP_DEAD_ZONE, out_activation = net->activation[out];
    const REAL off = (REAL)cfg->dead_zone_off, on = (REAL)cfg->dead_zone_on;
    const REAL tol = (REAL)cfg->stop_tol;
    VINT lane_index, outside = {0};
    for (int i = 0; i < VW; i++)
        lane_index[i] = i;

    for (int64_t lane = 0; lane < lanes; lane += VW) {
        for (int g = 0; g < net->n_inputs; g++)
            for (int64_t c = 0; c < net->size[g]; c++)
                act[first_unit[g] + c] = FN(vload)(ws->y[g] + c * ld + lane);
        /* forward: layer_forward_omp's tiles, one unit at a time */
        for (int l = net->n_inputs; l < net->n_layers; l++) {
            const REAL *bias = net->bias_offset[l] >= 0 ? params + net->bias_offset[l] : NULL;
            for (int64_t o = 0; o < net->size[l]; o++) {
                VREAL acc = FN(vsplat)(bias ? bias[o] : (REAL)0);
                for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
                    const int src = net->src_layer[e];
                    const int64_t n_in = net->size[src];
                    const REAL *w = params + net->w_offset[e] + o * n_in;
                    const VREAL *x = act + first_unit[src];
                    for (int64_t c = 0; c < n_in; c++)
                        acc = VFMA(FN(vsplat)(w[c]), x[c], acc);
                }
                act[first_unit[l] + o] = FN(vactivate)(acc, net->activation[l]);
            }
        }
        /* the output error: output_error_omp for this vector */
        const VINT valid = lane_index < (ITYPE)MIN(n_rows - lane, (int64_t)VW);
        for (int64_t o = 0; o < n_out; o++) {
            const VREAL yv = act[first_unit[out] + o];
            const VREAL dv = FN(vload)(ws->t_batch + o * ld + lane);
            VREAL e = yv - dv;
            const VREAL abs_e = FN(vselect)(e < 0, -e, e);
            outside |= valid & ~(abs_e < tol);
            VINT keep = valid;
            if (dead_zone)
                keep &= ~(((dv >= (REAL)0.5) & (yv > on)) | ((dv < (REAL)0.5) & (yv < off)));
            e = FN(vselect)(keep, e, FN(vsplat)(0));
            err_sum[o] += e * e;
            delta[first_unit[out] + o] = e * FN(vderivative)(yv, out_activation);
        }
        /* backward, highest layer first: layer_activation_backward_omp,
           layer_backward_weights_omp (the dot path) and layer_backward_inputs_omp */
        for (int l = out; l >= net->n_inputs; l--) {
            VREAL *d = delta + first_unit[l];
            const int64_t n = net->size[l];
            if (l != out && net->activation[l] != BP_IDENTITY)
                for (int64_t o = 0; o < n; o++)
                    d[o] = d[o] * FN(vderivative)(act[first_unit[l] + o], net->activation[l]);
            for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
                const int src = net->src_layer[e];
                const int64_t n_in = net->size[src];
                const VREAL *x = act + first_unit[src];
                VREAL *g = gacc + net->w_offset[e];
                for (int64_t o = 0; o < n; o++)
                    for (int64_t c = 0; c < n_in; c++)
                        g[o * n_in + c] = VFMA(d[o], x[c], g[o * n_in + c]);
            }
            if (net->bias_offset[l] >= 0) {
                VREAL *g = gacc + net->bias_offset[l];
                for (int64_t o = 0; o < n; o++)
                    g[o] += d[o];
            }
            for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
                const int src = net->src_layer[e];
                if (src < net->n_inputs)
                    continue;
                const int64_t n_in = net->size[src];
                const REAL *w = params + net->w_offset[e];
                VREAL *d_src = delta + first_unit[src];
                for (int64_t c = 0; c < n_in; c++) {
                    VREAL acc = net->accumulate[e] ? d_src[c] : FN(vsplat)(0);
                    for (int64_t o = 0; o < n; o++)
                        acc = VFMA(FN(vsplat)(w[o * n_in + c]), d[o], acc);
                    d_src[c] = acc;
                }
            }
        }
    }
    for (int64_t p = 0; p < net->n_params; p++)
        grad[p] = FN(hsum)(gacc[p]);
    double error = 0;
    for (int64_t o = 0; o < n_out; o++)
        error += 0.5 * (double)FN(hsum)(err_sum[o]);
    int within = 1;
    for (int i = 0; i < VW; i++)
        within &= outside[i] == 0;
    ws->error = error;
    ws->all_within = within;
}
