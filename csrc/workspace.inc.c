/* workspace.inc.c: the buffers of a training run or a forward pass, for one precision (they do not
 * depend on the instruction set). Included by bpfast.c once per REAL. */

struct CAT(bp_workspace, SFX) {
    int64_t max_rows;
    int64_t ld;         /* lanes per row: max_rows rounded up to whole vectors */
    REAL **y;           /* [n_layers] activations (size[l], ld); input groups are rows of x_batch */
    REAL **dy;          /* [n_layers] dE/dy, turned into dE/dx in place (computed layers only) */
    REAL **y_rows;      /* [n_layers] batch-major copies (max_rows, padded size) of the sources
                           that are at least a vector wide, for weight gradients; else NULL */
    int64_t *ld_rows;   /* [n_layers] padded size: the row length of y_rows[l] */
    REAL *grad_scratch; /* padded (O, ld_rows[src]) weight gradients of those sources' edges */
    int64_t *scratch_offset; /* [n_edges] where each such edge's block starts, -1 for others */
    double *row_error;  /* [n_outputs] each output unit's share of E */
    int *row_within;    /* [n_outputs] whether each output unit is within stop_tol everywhere */
    REAL *x_batch;      /* [n_input_cols, ld] the bound batch's inputs, feature-major */
    REAL *t_batch;      /* [n_outputs, ld] its targets */
    int64_t *order;     /* [n_samples] the case order of the current sweep */
    int64_t n_order;
    const REAL *bound_x;/* the cases x_batch holds when it holds a whole training set, else NULL */
    double error;       /* shared results, written by one thread, read by all after a barrier */
    int all_within;
    int status;
    int64_t n_done;     /* sweeps finished by the current train call */
    void *arena;        /* the one allocation the above point into */
};

/* Sources at least this wide get their weight gradients as a broadcast product over a batch-major
   copy (no horizontal sums); narrower ones as lane dot products, which suit them better. */
#define WIDE_SOURCE(size) ((size) >= VW)
#define PAD(size) (((int64_t)(size) + VW - 1) / VW * VW)

/* One allocation holds every buffer, so a failure leaves nothing behind. A forward-only workspace
   (for_training = 0) has no gradient buffers, batch-major copies or gradient scratch. */
WS *CAT(bp_workspace_create, SFX)(const bp_net *net, int64_t max_rows, int64_t n_samples,
                                  int for_training)
{
    const int64_t n_out = net->size[net->n_layers - 1];
    const int64_t ld = (max_rows + VW - 1) / VW * VW;
    int64_t n_act = 0;
    for (int l = net->n_inputs; l < net->n_layers; l++)
        n_act += net->size[l];
    const size_t n_ptr = (size_t)net->n_layers;
    const int n_edges = net->src_start[net->n_layers];
    int64_t n_rows_copy = 0, n_scratch = 0;
    for (int l = 0; l < net->n_layers - 1; l++)
        if (for_training && WIDE_SOURCE(net->size[l]))
            n_rows_copy += PAD(net->size[l]);
    for (int l = net->n_inputs; l < net->n_layers; l++)
        for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++)
            if (for_training && WIDE_SOURCE(net->size[net->src_layer[e]]))
                n_scratch += (int64_t)net->size[l] * PAD(net->size[net->src_layer[e]]);
    size_t bytes = sizeof(WS);
    bytes += 3 * n_ptr * sizeof(REAL *) + n_ptr * sizeof(int64_t) + n_edges * sizeof(int64_t);
    bytes += (size_t)(max_rows * n_rows_copy + n_scratch) * sizeof(REAL);
    bytes += (size_t)n_out * (sizeof(double) + sizeof(int));
    bytes += (size_t)n_samples * sizeof(int64_t);
    bytes += (size_t)ld * (size_t)((1 + (for_training != 0)) * n_act + net->n_input_cols + 2 * n_out) *
             sizeof(REAL);
    bytes += (12 + 3 * n_ptr) * 64; /* one cache line of alignment slack per buffer */
    char *arena = calloc(1, bytes);
    if (!arena)
        return NULL;
    char *p = arena;
#define TAKE(type, count) ((type *)take_aligned(&p, (size_t)(count) * sizeof(type)))
    WS *ws = TAKE(WS, 1);
    ws->arena = arena;
    ws->max_rows = max_rows;
    ws->ld = ld;
    ws->y = TAKE(REAL *, n_ptr);
    ws->dy = TAKE(REAL *, n_ptr);
    ws->row_error = TAKE(double, n_out);
    ws->row_within = TAKE(int, n_out);
    ws->order = TAKE(int64_t, n_samples);
    ws->n_order = n_samples;
    ws->x_batch = TAKE(REAL, ld * net->n_input_cols);
    ws->t_batch = TAKE(REAL, ld * n_out);
    for (int l = 0; l < net->n_inputs; l++)
        ws->y[l] = ws->x_batch + (int64_t)net->input_col[l] * ld;
    for (int l = net->n_inputs; l < net->n_layers; l++) {
        ws->y[l] = TAKE(REAL, ld * net->size[l]);
        /* evaluation writes the output layer's dE/dx too, so that one is always there */
        ws->dy[l] = for_training || l == net->n_layers - 1 ? TAKE(REAL, ld * net->size[l]) : NULL;
    }
    ws->y_rows = TAKE(REAL *, n_ptr);
    ws->ld_rows = TAKE(int64_t, n_ptr);
    for (int l = 0; l < net->n_layers - 1; l++) {
        ws->ld_rows[l] = PAD(net->size[l]);
        ws->y_rows[l] = for_training && WIDE_SOURCE(net->size[l])
                            ? TAKE(REAL, max_rows * ws->ld_rows[l]) : NULL;
    }
    ws->grad_scratch = TAKE(REAL, n_scratch);
    ws->scratch_offset = TAKE(int64_t, n_edges);
    n_scratch = 0;
    for (int l = net->n_inputs; l < net->n_layers; l++)
        for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
            const int src = net->src_layer[e];
            ws->scratch_offset[e] = for_training && WIDE_SOURCE(net->size[src]) ? n_scratch : -1;
            if (ws->scratch_offset[e] >= 0)
                n_scratch += (int64_t)net->size[l] * PAD(net->size[src]);
        }
#undef TAKE
    return ws;
}

void CAT(bp_workspace_free, SFX)(WS *ws)
{
    if (ws)
        free(ws->arena);
}

#undef WIDE_SOURCE
#undef PAD

const REAL *CAT(bp_workspace_activations, SFX)(const WS *ws, int l, int64_t *ld)
{
    *ld = ws->ld;
    return ws->y[l];
}
