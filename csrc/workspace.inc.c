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
    int weights_non_finite; /* set by the momentum update when a weight became NaN or infinite */
    const bp_stop *stop;/* the current call's stop request, or NULL */
    REAL *start_params, *start_velocity; /* [n_params] a mini-batch sweep's start, or NULL */
    uint64_t start_rng; /* ... and its shuffling state */
    void *arena;        /* the one allocation the above point into */
};

/* Sources at least this wide get their weight gradients as a broadcast product over a batch-major
   copy (no horizontal sums); narrower ones as lane dot products, which suit them better. */
#define WIDE_SOURCE(size) ((size) >= VW)
#define PAD(size) (((int64_t)(size) + VW - 1) / VW * VW)

/* One allocation holds every buffer, so a failure leaves nothing behind. A forward-only workspace
   (no BP_WS_TRAINING) has no gradient buffers, batch-major copies or gradient scratch.
   workspace_layout carves the buffers from `arena`, or only counts the bytes when it is NULL, so
   that the size reported to the memory guard is the size allocated. */
static size_t CAT(workspace_layout, SFX)(const bp_net *net, int64_t max_rows, int64_t n_samples,
                                         int features, char *arena)
{
    const int for_training = (features & BP_WS_TRAINING) != 0;
    const int sweep_start = for_training && (features & BP_WS_SWEEP_START) != 0;
    const int64_t n_out = net->size[net->n_layers - 1];
    const int64_t ld = (max_rows + VW - 1) / VW * VW;
    const int n_ptr = net->n_layers;
    const int n_edges = net->src_start[net->n_layers];
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
    ws->order = TAKE(int64_t, n_samples);
    ws->n_order = n_samples;
    ws->x_batch = TAKE(REAL, ld * net->n_input_cols);
    ws->t_batch = TAKE(REAL, ld * n_out);
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
        REAL *rows = for_training && WIDE_SOURCE(net->size[l])
                         ? TAKE(REAL, max_rows * PAD(net->size[l])) : NULL;
        if (arena) {
            ws->ld_rows[l] = PAD(net->size[l]);
            ws->y_rows[l] = rows;
        }
    }
    ws->scratch_offset = TAKE(int64_t, n_edges);
    int64_t n_scratch = 0;
    for (int l = net->n_inputs; l < net->n_layers; l++)
        for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
            const int src = net->src_layer[e];
            const int64_t offset = for_training && WIDE_SOURCE(net->size[src]) ? n_scratch : -1;
            if (arena)
                ws->scratch_offset[e] = offset;
            if (offset >= 0)
                n_scratch += (int64_t)net->size[l] * PAD(net->size[src]);
        }
    ws->grad_scratch = TAKE(REAL, n_scratch);
    ws->start_params = sweep_start ? TAKE(REAL, net->n_params) : NULL;
    ws->start_velocity = sweep_start ? TAKE(REAL, net->n_params) : NULL;
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

#undef WIDE_SOURCE
#undef PAD

const REAL *CAT(bp_workspace_activations, SFX)(const WS *ws, int l, int64_t *ld)
{
    *ld = ws->ld;
    return ws->y[l];
}
