/* workspace.inc.c: the buffers of a training run or a forward pass, for one precision (they do not
 * depend on the instruction set). Included by bpfast.c once per REAL. */

struct CAT(bp_workspace, SFX) {
    int64_t max_rows;
    int64_t ld;         /* lanes per row: max_rows rounded up to whole vectors */
    REAL **y;           /* [n_layers] activations (size[l], ld); input groups are rows of x_batch */
    REAL **dy;          /* [n_layers] dE/dy, turned into dE/dx in place (computed layers only) */
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

/* One allocation holds every buffer, so a failure leaves nothing behind. */
WS *CAT(bp_workspace_create, SFX)(const bp_net *net, int64_t max_rows, int64_t n_samples)
{
    const int64_t n_out = net->size[net->n_layers - 1];
    const int64_t ld = (max_rows + VW - 1) / VW * VW;
    int64_t n_act = 0;
    for (int l = net->n_inputs; l < net->n_layers; l++)
        n_act += net->size[l];
    const size_t n_ptr = (size_t)net->n_layers;
    size_t bytes = sizeof(WS);
    bytes += 2 * n_ptr * sizeof(REAL *);
    bytes += (size_t)n_out * (sizeof(double) + sizeof(int));
    bytes += (size_t)n_samples * sizeof(int64_t);
    bytes += (size_t)ld * (size_t)(2 * n_act + net->n_input_cols + n_out) * sizeof(REAL);
    bytes += (8 + 2 * n_ptr) * 64; /* one cache line of alignment slack per buffer */
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
        ws->dy[l] = TAKE(REAL, ld * net->size[l]);
    }
#undef TAKE
    return ws;
}

void CAT(bp_workspace_free, SFX)(WS *ws)
{
    if (ws)
        free(ws->arena);
}

const REAL *CAT(bp_workspace_activations, SFX)(const WS *ws, int l, int64_t *ld)
{
    *ld = ws->ld;
    return ws->y[l];
}
