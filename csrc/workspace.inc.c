/* workspace.inc.c: laying out, creating and freeing the workspace (internal.h) of one precision;
 * workspace.c includes it once per REAL. The layout does not depend on the instruction set. */

#define STRIDE(size) bp_row_stride(size, (int64_t)sizeof(REAL))

/* One allocation holds every buffer, so a failure leaves nothing behind. A forward-only workspace
   (no BP_WS_TRAINING) has no gradient buffers or batch-major copies.
   workspace_layout carves the buffers from `arena`, or only counts the bytes when it is NULL, so
   that the size reported to the memory guard is the size allocated. */
static size_t CAT(workspace_layout, SFX)(const bp_net *net, int64_t max_rows, int64_t n_samples,
                                         int features, char *arena)
{
    const int for_training = (features & BP_WS_TRAINING) != 0;
    const int sweep_start = for_training && (features & BP_WS_SWEEP_START) != 0;
    const int64_t n_out = net->size[net->n_layers - 1];
    const int64_t ld = STRIDE(max_rows); /* the largest: a batch of fewer rows binds closer */
    const int n_ptr = net->n_layers;
    uintptr_t p = (uintptr_t)arena; /* counting from 0 without an arena */
    WS probe;
#define TAKE(type, count) ((type *)take_aligned(&p, (size_t)(count) * sizeof(type)))
    WS *ws = TAKE(WS, 1);
    if (!arena) {
        ws = &probe; /* a place for the pointers carved in counting mode, never read */
    } else {
        ws->arena = arena;
        ws->max_rows = max_rows;
        ws->ld = ld;
    }
    ws->y = TAKE(REAL *, n_ptr);
    ws->dy = TAKE(REAL *, n_ptr);
    ws->row_error = TAKE(double, n_out);
    ws->row_within = TAKE(int, n_out);
    ws->error_terms = for_training ? TAKE(REAL, 2 * n_out * ld) : NULL;
    ws->order = TAKE(int64_t, n_samples);
    ws->n_order = n_samples;
    ws->x_batch = TAKE(REAL, ld * net->n_input_cols);
    ws->t_batch = TAKE(REAL, ld * (n_out + 1)); /* targets, then the case weights if any */
    ws->pack = (REAL *)TAKE(char, BP_PACK_BYTES);
    ws->pack_a = (REAL *)TAKE(char, BP_PACK_A_BYTES);
    for (int l = 0; l < net->n_inputs; l++)
        if (arena)
            ws->y[l] = ws->x_batch + (int64_t)net->input_col[l] * ld;
    for (int l = net->n_inputs; l < net->n_layers; l++) {
        REAL *y = TAKE(REAL, ld * net->size[l]);
        /* evaluation writes the output layer's dE/dx too, so that one is always there */
        REAL *dy = for_training || l == net->n_layers - 1 ? TAKE(REAL, ld * net->size[l]) : NULL;
        if (arena) {
            ws->y[l] = y;
            ws->dy[l] = dy;
        }
    }
    ws->y_rows = TAKE(REAL *, n_ptr);
    ws->ld_rows = TAKE(int64_t, n_ptr);
    for (int l = 0; l < net->n_layers - 1; l++) {
        REAL *rows = for_training && BP_WIDE_SOURCE(net->size[l])
                         ? TAKE(REAL, max_rows * STRIDE(net->size[l])) : NULL;
        if (arena) {
            ws->ld_rows[l] = STRIDE(net->size[l]);
            ws->y_rows[l] = rows;
        }
    }
    ws->start_params = sweep_start ? TAKE(REAL, net->n_params) : NULL;
    ws->start_velocity =
        sweep_start ? TAKE(REAL, BP_STATE_LENGTH(features & BP_WS_ADAM ? BP_ADAM : BP_MOMENTUM,
                                                 net->n_params))
                    : NULL;
    /* absent connections are the zeros calloc leaves in dense_params: nothing writes them */
    REAL *dense_params = net->share_runs ? TAKE(REAL, net->n_dense) : NULL;
    REAL *dense_grad = net->share_runs && for_training ? TAKE(REAL, net->n_dense) : NULL;
    if (arena) {
        ws->dense_params = dense_params;
        ws->dense_grad = dense_grad;
    }
    REAL *recurrent = NULL;
    if (net->recurrence && for_training) {
        const bp_recurrence *r = net->recurrence;
        /* recurrent.inc.c's rows, with T + 1 steps of lanes side by side, each step whole
           vectors of the widest variant; then its two matrices of the tied weights, and a
           wide hidden layer's batch-major copy */
        const int64_t line = BP_PAD_BYTES / (int64_t)sizeof(REAL);
        const int64_t step = (max_rows + line - 1) / line * line;
        const int64_t n_in = r->n_inputs, H = r->n_hidden, O = r->n_outputs;
        const int64_t lanes = (r->n_steps + 1) * step;
        recurrent = TAKE(REAL, (n_in + 2 * H + 2 * O) * STRIDE(lanes) + H * (n_in + O + 2 * H) +
                                   (BP_WIDE_SOURCE(H) ? lanes * STRIDE(H) : 0));
    }
    if (arena)
        ws->recurrent = recurrent;
#undef TAKE
    return (size_t)(p - (uintptr_t)arena) + 64; /* + 64: the first take aligns the arena's start */
}

size_t CAT(bp_workspace_bytes, SFX)(const bp_net *net, int64_t max_rows, int64_t n_samples,
                                    int features)
{
    return CAT(workspace_layout, SFX)(net, max_rows, n_samples, features, NULL);
}

WS *CAT(bp_workspace_create, SFX)(const bp_net *net, int64_t max_rows, int64_t n_samples,
                                  int features)
{
    char *arena = calloc(1, CAT(bp_workspace_bytes, SFX)(net, max_rows, n_samples, features));
    if (!arena)
        return NULL;
    CAT(workspace_layout, SFX)(net, max_rows, n_samples, features, arena);
    uintptr_t first = (uintptr_t)arena;
    return (WS *)take_aligned(&first, 0); /* where the layout put the struct itself */
}

void CAT(bp_workspace_free, SFX)(WS *ws)
{
    if (ws)
        free(ws->arena);
}

#undef STRIDE

const REAL *CAT(bp_workspace_activations, SFX)(const WS *ws, int l, int64_t *ld)
{
    *ld = ws->ld;
    return ws->y[l];
}
