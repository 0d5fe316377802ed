/* selftest_nets.h: nets for the C self-tests (kernel_selftest.c, threads_selftest.c), built as
 * bp_net descriptions without Python: layers with their sources, and one net with shared
 * weights; and a seeded uniform generator. */
#ifndef BPFAST_SELFTEST_NETS_H
#define BPFAST_SELFTEST_NETS_H

#include "bpfast.h"

#include <stdint.h>
#include <string.h>

#define MAX_LAYERS 8
#define MAX_EDGES 16

typedef struct {
    const char *name;
    bp_net net;
    int size[MAX_LAYERS], activation[MAX_LAYERS], input_col[MAX_LAYERS];
    int src_start[MAX_LAYERS + 1], src_layer[MAX_EDGES], accumulate[MAX_EDGES];
    int64_t bias_offset[MAX_LAYERS], w_offset[MAX_EDGES];
    int row_start[MAX_EDGES], row_end[MAX_EDGES];
} topology;

/* layers: sizes, activations, bias flags, and for each computed layer its sources (-1 ends). */
static void build(topology *t, const char *name, int n_layers, int n_inputs, const int *size,
                  const int *activation, const int *bias, const int sources[][4])
{
    memset(t, 0, sizeof *t);
    t->name = name;
    int64_t offset = 0;
    int edges = 0, col = 0;
    for (int l = 0; l < n_layers; l++) {
        t->size[l] = size[l];
        t->activation[l] = activation[l];
        if (l < n_inputs) {
            t->input_col[l] = col;
            col += size[l];
        }
        t->src_start[l] = edges;
        for (int k = 0; l >= n_inputs && sources[l][k] >= 0; k++) {
            t->src_layer[edges] = sources[l][k];
            t->w_offset[edges++] = offset;
            offset += (int64_t)size[l] * size[sources[l][k]];
        }
    }
    t->src_start[n_layers] = edges;
    for (int l = 0; l < n_layers; l++) {
        t->bias_offset[l] = l >= n_inputs && bias[l] ? offset : -1;
        offset += t->bias_offset[l] >= 0 ? size[l] : 0;
    }
    /* an edge adds to its source's input gradient if a higher layer feeds on that source too */
    for (int e = 0; e < edges; e++) {
        int layer = 0;
        while (t->src_start[layer + 1] <= e)
            layer++;
        for (int f = t->src_start[layer + 1]; f < edges; f++)
            t->accumulate[e] |= t->src_layer[f] == t->src_layer[e];
    }
    t->net = (bp_net){.n_layers = n_layers, .n_inputs = n_inputs, .n_input_cols = col,
                      .size = t->size, .activation = t->activation,
                      .bias_offset = t->bias_offset, .input_col = t->input_col,
                      .src_start = t->src_start, .src_layer = t->src_layer,
                      .w_offset = t->w_offset, .accumulate = t->accumulate,
                      .n_params = offset, .n_dense = offset}; /* no weight sharing */
}

static double uniform(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*state >> 11) / 9007199254740992.0;
}

/* The shared net (bp_net's weight sharing) built on the dense DAG
 *   x(4) -> h1(5) -> h2(5) -> y(3), and h1 -> y (a skip):
 * h1's and h2's biases are one vector, and row 0 of the block y <- h1 is absent while its rows 1
 * and 2 are the parameters of rows 1 and 2 of y <- h2. Dense slots: w(h1<-x) 0..19, w(h2<-h1)
 * 20..44, w(y<-h2) 45..59, w(y<-h1) 60..74, biases h1 75..79, h2 80..84, y 85..87. */
static const int64_t SHARED_RUNS[] = {0, 0, 60, 65, 50, 10, 75, 60, 5, 80, 60, 5, 85, 65, 3};
static const int64_t SHARED_CHUNK_START[] = {0, 5}, SHARED_CHUNK_RUNS[] = {0, 1, 2, 3, 4};

static void share(topology *t)
{
    const int starts[] = {0, 0, 0, 1}, ends[] = {5, 5, 3, 3};
    memcpy(t->row_start, starts, sizeof starts);
    memcpy(t->row_end, ends, sizeof ends);
    t->net.n_params = 68;
    t->net.n_share_runs = 5;
    t->net.share_runs = SHARED_RUNS;
    t->net.share_chunk = 1024;
    t->net.share_chunk_start = SHARED_CHUNK_START;
    t->net.share_chunk_runs = SHARED_CHUNK_RUNS;
    t->net.row_start = t->row_start;
    t->net.row_end = t->row_end;
}

#endif
