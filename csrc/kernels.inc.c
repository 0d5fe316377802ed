/* kernels.inc.c: the math of one sweep, for one precision. Included by bpfast.c once per REAL
 * (float, double) with SFX (f32, f64) defined; never compiled on its own.
 *
 * Every function named *_omp runs inside an enclosing `omp parallel` region and splits its work
 * with orphaned `omp for` constructs, so that one region can cover many sweeps. Each output
 * element is written by exactly one thread in a fixed summation order, which is why results are
 * bitwise identical for any thread count:
 *   - forward, output error and input gradients are split over batch rows;
 *   - weight gradients are split over output units, summing over the batch in row order;
 *   - the error is summed over rows in row order by a single thread;
 *   - the update is elementwise.
 * Outside a parallel region (or without OpenMP) the same code runs on the calling thread.
 *
 * Not here: validation (the Python layer does it), allocation (bpfast.c), the sweep loop (train.inc.c).
 */

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SFX)
#define WS CAT(bp_workspace, SFX)

struct CAT(bp_workspace, SFX) {
    int64_t max_rows;
    REAL **y;           /* [n_layers] activations, rows of ld[l]; input groups point into the batch */
    int64_t *ld;        /* [n_layers] */
    REAL **dy;          /* [n_layers] dE/dy, turned into dE/dx in place (computed layers only) */
    double *row_error;  /* [max_rows] each row's share of E */
    int *row_within;    /* [max_rows] whether each row's outputs are all within stop_tol */
    REAL *x_batch;      /* [max_rows, n_input_cols] gathered rows of a shuffled mini-batch */
    REAL *t_batch;      /* [max_rows, n_outputs] */
    int64_t *order;     /* [n_samples] the case order of the current sweep */
    int64_t n_order;
    double error;       /* shared results, written by one thread, read by all after a barrier */
    int all_within;
    int status;
    void *arena;        /* the one allocation the above point into */
};

/* a . b with eight independent accumulators: vectorisable without reassociating, and summed in a
   fixed order so the result does not depend on anything but the inputs. */
static inline REAL FN(dot)(const REAL *BP_RESTRICT a, const REAL *BP_RESTRICT b, int64_t n)
{
    REAL acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += a[i + k] * b[i + k];
    REAL tail = 0;
    for (; i < n; i++)
        tail += a[i] * b[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

static inline void FN(activate)(REAL *BP_RESTRICT y, int64_t n, int activation)
{
    switch (activation) {
    case BP_LOGISTIC:
        for (int64_t i = 0; i < n; i++)
            y[i] = (REAL)1 / ((REAL)1 + EXP(-y[i]));
        break;
    case BP_TANH:
        for (int64_t i = 0; i < n; i++)
            y[i] = TANH(y[i]);
        break;
    default:
        break;
    }
}

/* dE/dx = dE/dy * f'(x), with f' written in terms of the saved output y. */
static inline void FN(activation_backward)(REAL *BP_RESTRICT dy, const REAL *BP_RESTRICT y,
                                           int64_t n, int activation)
{
    switch (activation) {
    case BP_LOGISTIC: /* y = 1/(1+exp(-x)): dy/dx = y(1-y) */
        for (int64_t i = 0; i < n; i++)
            dy[i] *= y[i] * ((REAL)1 - y[i]);
        break;
    case BP_TANH: /* y = tanh(x): dy/dx = 1 - y^2 */
        for (int64_t i = 0; i < n; i++)
            dy[i] *= (REAL)1 - y[i] * y[i];
        break;
    default:
        break;
    }
}

/* Point the input groups at a batch of rows laid out like X. */
static void FN(bind_inputs)(const bp_net *net, WS *ws, const REAL *x_rows)
{
    for (int l = 0; l < net->n_inputs; l++) {
        ws->y[l] = (REAL *)x_rows + net->input_col[l];
        ws->ld[l] = net->n_input_cols;
    }
}

/* Layer l, for rows [0, n_rows):
 *   y[b, o] = f(bias[o] + sum_e sum_c x_e[b, c] W_e[o, c])    x_e (B, C_e), W_e (O, C_e), y (B, O) */
static void FN(layer_forward_omp)(const bp_net *net, WS *ws, const REAL *params, int l,
                                  int64_t n_rows)
{
    const int64_t n_out = net->size[l];
    const REAL *bias = net->bias_offset[l] >= 0 ? params + net->bias_offset[l] : NULL;
    REAL *y = ws->y[l];
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_rows; b++) {
        REAL *y_row = y + b * n_out;
        for (int64_t o = 0; o < n_out; o++)
            y_row[o] = bias ? bias[o] : (REAL)0;
        for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
            const int src = net->src_layer[e];
            const int64_t n_in = net->size[src];
            const REAL *x_row = ws->y[src] + b * ws->ld[src];
            const REAL *W = params + net->w_offset[e];
            for (int64_t o = 0; o < n_out; o++)
                y_row[o] += FN(dot)(x_row, W + o * n_in, n_in);
        }
        FN(activate)(y_row, n_out, net->activation[l]);
    }
}

static void FN(forward_omp)(const bp_net *net, WS *ws, const REAL *params, int64_t n_rows)
{
    for (int l = net->n_inputs; l < net->n_layers; l++)
        FN(layer_forward_omp)(net, ws, params, l, n_rows);
}

/* The output layer's error. For row b:
 *   E_b = 1/2 sum_o e[b,o]^2,  e = y - d  (0 inside the dead zone),  dy[b,o] = e[b,o] f'(y[b,o]).
 * Sets ws->error = sum_b E_b (in row order) and ws->all_within. */
static void FN(output_error_omp)(const bp_net *net, WS *ws, const REAL *T, int64_t n_rows,
                                 const bp_train_config *cfg)
{
    const int out = net->n_layers - 1;
    const int64_t n_out = net->size[out];
    const REAL *y = ws->y[out];
    REAL *dy = ws->dy[out];
    const int dead_zone = cfg->loss == BP_DEAD_ZONE;
    const REAL off = (REAL)cfg->dead_zone_off, on = (REAL)cfg->dead_zone_on;
    const REAL tol = (REAL)cfg->stop_tol;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_rows; b++) {
        double row_error = 0;
        int within = 1;
        for (int64_t o = 0; o < n_out; o++) {
            const REAL yo = y[b * n_out + o], d = T[b * n_out + o];
            REAL e = yo - d;
            within &= FABS(e) < tol;
            if (dead_zone && ((d >= (REAL)0.5 && yo > on) || (d < (REAL)0.5 && yo < off)))
                e = 0;
            row_error += 0.5 * (double)e * (double)e;
            dy[b * n_out + o] = e;
        }
        FN(activation_backward)(dy + b * n_out, y + b * n_out, n_out, net->activation[out]);
        ws->row_error[b] = row_error;
        ws->row_within[b] = within;
    }
#pragma omp single
    {
        double error = 0;
        int all_within = 1;
        for (int64_t b = 0; b < n_rows; b++) {
            error += ws->row_error[b];
            all_within &= ws->row_within[b];
        }
        ws->error = error;
        ws->all_within = all_within;
    }
}

/* Gradients of layer l's weights and bias; dy[l] already holds dE/dx.
 *   forward: y[b,o] = f(... + sum_c x[b,c] W[o,c] + bias[o])
 *   dE/dW[o,c] = sum_b dE/dx[b,o] x[b,c],   dE/dbias[o] = sum_b dE/dx[b,o]
 * Split over output units o; each sums over rows in order. */
static void FN(layer_backward_weights_omp)(const bp_net *net, WS *ws, REAL *grad, int l,
                                           int64_t n_rows)
{
    const int64_t n_out = net->size[l];
    const REAL *dx = ws->dy[l];
    REAL *grad_bias = net->bias_offset[l] >= 0 ? grad + net->bias_offset[l] : NULL;
#pragma omp for schedule(static) nowait
    for (int64_t o = 0; o < n_out; o++) {
        for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
            const int src = net->src_layer[e];
            const int64_t n_in = net->size[src], ld = ws->ld[src];
            const REAL *x = ws->y[src];
            REAL *BP_RESTRICT grad_w = grad + net->w_offset[e] + o * n_in;
            for (int64_t c = 0; c < n_in; c++)
                grad_w[c] = 0;
            for (int64_t b = 0; b < n_rows; b++) {
                const REAL d = dx[b * n_out + o];
                const REAL *BP_RESTRICT x_row = x + b * ld;
                for (int64_t c = 0; c < n_in; c++)
                    grad_w[c] += d * x_row[c];
            }
        }
        if (grad_bias) {
            REAL sum = 0;
            for (int64_t b = 0; b < n_rows; b++)
                sum += dx[b * n_out + o];
            grad_bias[o] = sum;
        }
    }
}

/* Gradients flowing down to layer l's computed sources.
 *   dE/dy_src[b,c] (+)= sum_o dE/dx[b,o] W[o,c]
 * Split over rows. The first consumer of a source (the highest layer) writes, the rest add. */
static void FN(layer_backward_inputs_omp)(const bp_net *net, WS *ws, const REAL *params, int l,
                                          int64_t n_rows)
{
    const int64_t n_out = net->size[l];
    const REAL *dx = ws->dy[l];
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_rows; b++) {
        for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
            const int src = net->src_layer[e];
            if (src < net->n_inputs)
                continue;
            const int64_t n_in = net->size[src];
            const REAL *W = params + net->w_offset[e];
            REAL *BP_RESTRICT dy_row = ws->dy[src] + b * n_in;
            if (!net->accumulate[e])
                for (int64_t c = 0; c < n_in; c++)
                    dy_row[c] = 0;
            for (int64_t o = 0; o < n_out; o++) {
                const REAL d = dx[b * n_out + o];
                const REAL *BP_RESTRICT w_row = W + o * n_in;
                for (int64_t c = 0; c < n_in; c++)
                    dy_row[c] += d * w_row[c];
            }
        }
    }
}

/* Turn layer l's dE/dy (complete once every higher layer has run) into dE/dx. */
static void FN(layer_activation_backward_omp)(const bp_net *net, WS *ws, int l, int64_t n_rows)
{
    const int64_t n = net->size[l];
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_rows; b++)
        FN(activation_backward)(ws->dy[l] + b * n, ws->y[l] + b * n, n, net->activation[l]);
}

/* Forward and backward over the bound batch: grad = dE/dparams; ws->error, ws->all_within. */
static void FN(loss_gradient_omp)(const bp_net *net, WS *ws, REAL *grad, const REAL *params,
                                  const REAL *T, int64_t n_rows, const bp_train_config *cfg)
{
    FN(forward_omp)(net, ws, params, n_rows);
    FN(output_error_omp)(net, ws, T, n_rows, cfg);
    for (int l = net->n_layers - 1; l >= net->n_inputs; l--) {
        if (l != net->n_layers - 1)
            FN(layer_activation_backward_omp)(net, ws, l, n_rows);
        FN(layer_backward_weights_omp)(net, ws, grad, l, n_rows);
        FN(layer_backward_inputs_omp)(net, ws, params, l, n_rows);
    }
}

/* The paper's eq. 9 and the family-trees decay:
 *   dw(t) = -lr dE/dw + momentum dw(t-1);  w += dw(t);  w *= (1 - weight_decay) for decayed params */
static void FN(momentum_update_omp)(REAL *BP_RESTRICT params, REAL *BP_RESTRICT velocity,
                                    const REAL *BP_RESTRICT grad, int64_t n_params,
                                    const bp_phase *phase)
{
    const REAL lr = (REAL)phase->lr, momentum = (REAL)phase->momentum;
    const REAL keep = (REAL)(1.0 - phase->weight_decay);
    const int64_t n_decayed = phase->weight_decay != 0 ? phase->n_decayed : 0;
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < n_decayed; i++) {
        const REAL v = momentum * velocity[i] - lr * grad[i];
        velocity[i] = v;
        params[i] = (params[i] + v) * keep;
    }
#pragma omp for schedule(static)
    for (int64_t i = n_decayed; i < n_params; i++) {
        const REAL v = momentum * velocity[i] - lr * grad[i];
        velocity[i] = v;
        params[i] += v;
    }
}

#undef WS
#undef FN
#undef CAT
#undef CAT_
