/* recurrent.inc.c: the loss and gradient of a recurrent net (bp_recurrence) over the bound batch,
 * for one (REAL, ISA, PAR); included by variant.inc.c after kernels.inc.c.
 *
 * The unrolled net (bpfast/recurrent.py) is a layered net of T hidden layers, and layer by layer
 * it makes one small product per step and weight block and every tied block's gradient once per
 * copy, then sums the copies (W7, T = 6 steps of 20 sequences: about 45 products a sweep, most
 * of 5 or 3 terms). Here each unit has one row with every step's lanes side by side (S lanes a
 * step: the batch in whole vectors), and a step is one product of the tied matrices side by side:
 *   H_0 = f(b_h + W_in x_0),  H_t = f(b_h + [W_in | W_rec] [x_t; H_(t-1)])
 *   Y = g(b_y + W_out H)                          every step at once
 *   dY = the output error
 *   dH_(T-1) = W_out^T dY_(T-1),  dH_t = [W_out^T | W_rec^T] [dY_t; dX_(t+1)]
 *   dX_t = f'(H_t) dH_t
 *   dW_out = dY H^T,  dW_rec = dX_(1..) H_(..T-2)^T,  dW_in = dX X^T,  db = row sums
 * The weight gradients are products over all their steps' lanes (K = every step's cases): a
 * tied weight's copies are summed as its gradient is made. As in the layers' (kernels.inc.c:
 * layer_backward_weights_omp), those of a wide hidden layer are broadcast tiles over its
 * batch-major copy, the rest lane dot products. Every activation, the error and every dE/dx
 * are the unrolled net's bit for bit (the same terms in the same order); only the weight
 * gradients are summed in another order.
 *
 * Lanes, in slots of S (so that each step's operands of a product are one block of rows):
 *   fwd  rows [x (n_in); h (H)]:  x_t in slot t, H_t in slot t + 1
 *   bwd  rows [dy (O); dh (H)]:   dY_t in slot t + 1, dX_t in slot t
 *   y    rows (O):                Y_t in slot t
 *   h_rows (a wide H only):       H_t batch-major, rows t S ..
 */

/* The buffers, carved from ws->recurrent for a batch of S lanes a step (workspace.inc.c sizes
   it for the largest): each block of rows ld apart, then the two side-by-side matrices. */
typedef struct {
    int64_t ld, ld_rows;
    REAL *x, *h, *dy, *dh, *y, *fwd_w, *bwd_w, *h_rows;
} FN(recurrent_rows);

static FN(recurrent_rows) FN(recurrent_layout)(const bp_recurrence *r, REAL *buffer, int64_t S)
{
    const int64_t n_in = r->n_inputs, H = r->n_hidden, O = r->n_outputs;
    FN(recurrent_rows) b;
    b.ld = bp_row_stride((r->n_steps + 1) * S, (int64_t)sizeof(REAL));
    b.x = buffer;
    b.h = b.x + n_in * b.ld;
    b.dy = b.h + H * b.ld;
    b.dh = b.dy + O * b.ld;
    b.y = b.dh + H * b.ld;
    b.fwd_w = b.y + O * b.ld;
    b.bwd_w = b.fwd_w + H * (n_in + H);
    b.ld_rows = bp_row_stride(H, (int64_t)sizeof(REAL));
    b.h_rows = BP_WIDE_SOURCE(H) ? b.bwd_w + H * (O + H) : NULL;
    return b;
}

static void FN(recurrent_gradient_omp)(const bp_net *net, WS *ws, REAL *grad, const REAL *params,
                                       int64_t n_rows, const bp_train_config *cfg)
{
    const bp_recurrence *r = net->recurrence;
    const int64_t T = r->n_steps, n_in = r->n_inputs, H = r->n_hidden, O = r->n_outputs;
    const int64_t S = FN(ceil_div)(n_rows, VW) * VW, N = T * S;
    const int f = r->hidden_activation, g = r->output_activation;
    const FN(recurrent_rows) b = FN(recurrent_layout)(r, ws->recurrent, S);
    const int64_t ld = b.ld, fwd_k = n_in + H, bwd_k = O + H;
    const REAL *const w_in = params + r->w_in, *const w_rec = params + r->w_rec;
    const REAL *const w_out = params + r->w_out;
    const REAL *const b_h = r->b_hidden >= 0 ? params + r->b_hidden : NULL;
    const REAL *const b_y = r->b_output >= 0 ? params + r->b_output : NULL;

    /* [W_in | W_rec] and [W_out^T | W_rec^T], row by row; and the bound inputs in their slots
       (row t n_in + i of x_batch is input i at step t; its padding lanes are zeros) */
    OMP_FOR_NOWAIT
    for (int64_t i = 0; i < H; i++) {
        memcpy(b.fwd_w + i * fwd_k, w_in + i * n_in, (size_t)n_in * sizeof(REAL));
        memcpy(b.fwd_w + i * fwd_k + n_in, w_rec + i * H, (size_t)H * sizeof(REAL));
        for (int64_t k = 0; k < O; k++)
            b.bwd_w[i * bwd_k + k] = w_out[k * H + i];
        for (int64_t k = 0; k < H; k++)
            b.bwd_w[i * bwd_k + O + k] = w_rec[k * H + i];
    }
    OMP_FOR
    for (int64_t row = 0; row < T * n_in; row++)
        memcpy(b.x + row % n_in * ld + row / n_in * S, ws->x_batch + row * ws->ld,
               (size_t)S * sizeof(REAL));

    for (int64_t t = 0; t < T; t++)
        FN(product_omp)(ws, b.h + (t + 1) * S, ld, b.fwd_w, fwd_k, 1, b.x + t * S, ld, H, S,
                        t ? fwd_k : n_in, b_h, 0, f, S);
    FN(product_omp)(ws, b.y, ld, w_out, H, 1, b.h + S, ld, O, N, H, b_y, 0, g, N);
    FN(output_error_rows_omp)(ws, b.y, b.dy + S, T * O, O, ld, S, g, n_rows, S, cfg);

    for (int64_t t = T - 1; t >= 0; t--) {
        FN(product_omp)(ws, b.dh + t * S, ld, b.bwd_w, bwd_k, 1, b.dy + (t + 1) * S, ld, H, S,
                        t < T - 1 ? bwd_k : O, NULL, 0, -1, S);
        if (f != BP_IDENTITY) {
            OMP_FOR
            for (int64_t u = 0; u < H; u++)
                FN(vderivative_times)((VREAL *)(b.dh + u * ld + t * S),
                                      (const VREAL *)(b.h + u * ld + (t + 1) * S), (int)(S / VW),
                                      f);
        }
    }

    if (b.h_rows) {
        const int64_t cols = FN(ceil_div)(H, VW) * VW; /* the copy's columns past H are zeros */
        FN(transpose_rows_of_omp)(ws, b.h_rows, b.ld_rows, b.h + S, ld, H, N);
        OMP_BARRIER
        FN(product_omp)(ws, grad + r->w_out, H, b.dy + S, ld, 1, b.h_rows, b.ld_rows, O, cols,
                        N, NULL, 0, -1, H);
        FN(product_omp)(ws, grad + r->w_rec, H, b.dh + S, ld, 1, b.h_rows, b.ld_rows, H, cols,
                        N - S, NULL, 0, -1, H);
    } else {
        FN(dots_omp)(ws, grad + r->w_out, H, b.dy + S, ld, b.h + S, ld, N, O, H);
        FN(dots_omp)(ws, grad + r->w_rec, H, b.dh + S, ld, b.h + S, ld, N - S, H, H);
    }
    FN(dots_omp)(ws, grad + r->w_in, n_in, b.dh, ld, b.x, ld, N, H, n_in);
    if (b_h)
        FN(row_sums_omp)(grad + r->b_hidden, b.dh, ld, H, N);
    if (b_y)
        FN(row_sums_omp)(grad + r->b_output, b.dy + S, ld, O, N);
    OMP_BARRIER /* the nowait loops above are done */
    if (net->share_scale) { /* gradient="mean": each tied weight's average over its steps */
        const int64_t chunk = net->share_chunk;
        OMP_FOR
        for (int64_t lo = 0; lo < net->n_params; lo += chunk)
            FN(mean_over_copies)(net, grad, lo, MIN(lo + chunk, net->n_params));
    }
}
