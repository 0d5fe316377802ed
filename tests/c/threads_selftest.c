/* threads_selftest.c: the compiled core's threaded paths checked on their own, without Python:
 * built with ThreadSanitizer by .ci/tsan (clang, LLVM's OpenMP runtime and its Archer tool,
 * which shows TSan the runtime's barriers), and without it by tests/test_native.py. A missing
 * barrier rarely changes a bit on x86, where stores are seen in order; a race report names it
 * (session 25's review found one this way: bench/results/2026-12-02-session25.md, section 3).
 *
 * For random settings on eleven nets (a DAG with two input groups, tanh, identity and logistic
 * units and a layer without bias; a wide chain; three wide and narrow input groups; shared
 * weights; a single input; a 300-300-8 chain whose products take several cache blocks, each
 * ending at a barrier; a wide hidden layer feeding three layers through skips, as it is and with
 * a tied block and an absent row; absent blocks with and without another block adding to their
 * target; two input groups and a wide layer feeding two), every kernel variant the CPU runs:
 *   - mini-batch and full-batch training on 2 and 5 threads gives the bits of 1 thread: batch
 *     sizes 1 to 1,100, shuffled or not, case weights (with batches of weight 0), float64 X,
 *     dropout, a stop rule, with and without the whole-net loop;
 *   - the same training cut into calls (of a few batches, or a full-batch sweep) on a random
 *     number of threads, each with a random deadline (none, passed, or within 0.2 ms: inside a
 *     product, whose threads then leave it together), resumed where it paused or stopped, gives
 *     those bits too;
 *   - then evaluation (whole and in chunks), forward and loss_gradient on the threads give the
 *     bits of 1 thread;
 *   - a population of the symmetry net in the lanes (population_train) on 2 and 5 threads, cut
 *     into calls of a few sweeps, gives the bits of one uncut call on 1 thread.
 * Usage: threads_selftest [ROUNDS [SEED [ISA]]] (ISA: one variant; default every one). Prints a
 * line per variant; exits 1 if any check fails. */
#include "selftest_nets.h"

#include <stdio.h>
#include <stdlib.h>

static int failures = 0;
static long n_calls = 0, n_paused = 0, n_stopped = 0;
static uint64_t seed;

static double urand(void) { return uniform(&seed); }

#define EXPECT(cond, ...)                                                                        \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            failures++;                                                                          \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                         \
            printf(__VA_ARGS__);                                                                 \
            printf("\n");                                                                        \
        }                                                                                        \
    } while (0)

typedef struct {
    int64_t n, batch, max_rows;
    int weighted, x_double, shuffle, n_sweeps, small_nets;
    double dropout, stop_tol;
} setup;

/* what a run leaves: weights, velocity, generator, sweeps done, status, and 16 numbers (the
   sweeps' errors, then evaluate's error, forward's output sum, loss_gradient's error and a
   weighted sum of its gradient) */
typedef struct {
    float *w, *v;
    double numbers[16];
    uint64_t rng;
    int64_t done;
    int status;
} result;

/* One run of s on `threads` threads: uncut, or (cut) in calls of 1-4 batches on 1..threads
   threads with random deadlines; then the other paths into the bind. */
static result run(const topology *t, const bp_kernels *k, const setup *s, const float *p0,
                  const double *Xd, const float *Xf, const float *T, int threads, int cut)
{
    const bp_net *net = &t->net;
    const int64_t n = net->n_params;
    result r = {0};
    r.w = malloc(n * sizeof(float));
    r.v = calloc(n, sizeof(float));
    memcpy(r.w, p0, n * sizeof(float));
    float *g = malloc(n * sizeof(float));
    bp_workspace_f32 *ws = bp_workspace_create_f32(net, s->max_rows, s->shuffle ? s->n : 0,
                                                   BP_WS_TRAINING | BP_WS_SWEEP_START);
    bp_stop stop = {0};
    bp_train_config cfg = {0};
    cfg.n_samples = s->n;
    cfg.batch_size = s->batch;
    cfg.loss = BP_SSE;
    cfg.n_threads = threads;
    cfg.small_nets = s->small_nets;
    cfg.shuffle = s->shuffle;
    cfg.weighted = s->weighted;
    cfg.x_double = s->x_double;
    cfg.dropout = s->dropout;
    cfg.stop_tol = s->stop_tol;
    cfg.stop = &stop;
    const void *X = s->x_double ? (const void *)Xd : (const void *)Xf;
    const bp_phase phase = {.lr = 0.01, .momentum = 0.9, .rule = BP_MOMENTUM};
    r.rng = 7;
    if (!cut) {
        r.done = k->train_f32(net, ws, r.w, r.v, g, (const float *)X, T, &cfg, &phase,
                              s->n_sweeps, &r.rng, r.numbers, &r.status);
    } else { /* (full batch: no limit of batches, a stopped sweep starts again) */
        const int64_t per_sweep = (s->n + s->batch - 1) / s->batch;
        int64_t batches_run = 0, into = 0, calls = 0;
        cfg.batches_run = &batches_run;
        while (r.done < s->n_sweeps && calls++ < 100000) {
            cfg.max_batches = s->batch < s->n ? 1 + (int64_t)(urand() * 4) : 0;
            if (cfg.max_batches > per_sweep - into)
                cfg.max_batches = per_sweep - into;
            cfg.n_threads = 1 + (int)(urand() * threads);
            const double u = urand();
            stop.deadline = u < 0.3 ? 0 : u < 0.5 ? bp_monotonic_seconds() - 1
                                                  : bp_monotonic_seconds() + urand() * 2e-4;
            int status;
            r.done += k->train_f32(net, ws, r.w, r.v, g, (const float *)X, T, &cfg, &phase, 1,
                                   &r.rng, r.numbers + r.done, &status);
            n_calls++;
            n_paused += status == BP_PAUSED && batches_run < cfg.max_batches;
            n_stopped += status == BP_STOPPED;
            into = status == BP_PAUSED ? into + batches_run : 0;
            if (status != BP_PAUSED && status != BP_STOPPED && status != BP_RUNNING) {
                r.status = status;
                break;
            }
        }
        EXPECT(calls < 100000, "%s: cut training made no progress", t->name);
    }
    stop.deadline = 0;
    cfg.n_threads = threads;
    cfg.max_batches = 0;
    cfg.batches_run = NULL;
    int within;
    r.numbers[12] = k->evaluate_f32(net, ws, r.w, (const float *)X, T, &cfg, &within);
    if (!s->x_double) {
        k->forward_f32(net, ws, r.w, Xf, s->max_rows, threads, NULL);
        int64_t ld;
        const float *y = bp_workspace_activations_f32(ws, net->n_layers - 1, &ld);
        for (int64_t i = 0; i < s->max_rows; i++)
            r.numbers[13] += y[i];
    }
    r.numbers[14] = k->loss_gradient_f32(net, ws, g, r.w, (const float *)X, T, s->max_rows,
                                         &cfg, &within);
    for (int64_t i = 0; i < n; i++)
        r.numbers[15] += g[i] * (i + 1.0);
    bp_workspace_free_f32(ws);
    free(g);
    return r;
}

static void compare(const topology *t, const result *a, const result *b, const char *what,
                    const setup *s, int threads)
{
    const int64_t n = t->net.n_params;
    int same = memcmp(a->w, b->w, n * sizeof(float)) == 0 &&
               memcmp(a->v, b->v, n * sizeof(float)) == 0 && a->rng == b->rng &&
               a->done == b->done && a->status == b->status &&
               memcmp(a->numbers, b->numbers, sizeof a->numbers) == 0;
    EXPECT(same,
           "%s %s on %d threads differs from 1 thread: %lld cases, batches of %lld, rows %lld, "
           "weighted %d, float64 X %d, shuffled %d, dropout %g, stop_tol %g, whole-net loop %d",
           what, t->name, threads, (long long)s->n, (long long)s->batch, (long long)s->max_rows,
           s->weighted, s->x_double, s->shuffle, s->dropout, s->stop_tol, s->small_nets);
}

/* Random settings; a `long_products` net gets batches whose products take several cache blocks
   (barriers) each, for a stop to land inside one. */
static void check_training(const topology *t, const bp_kernels *k, int long_products)
{
    static const int64_t NS[] = {40, 97, 300}, BS[] = {1, 3, 17, 200, 257};
    setup s = {0};
    s.n = long_products ? 1100 : NS[(int)(urand() * 3)];
    s.batch = urand() < 0.15 ? s.n : long_products ? 550 : BS[(int)(urand() * 5)];
    if (s.batch > s.n)
        s.batch = s.n;
    s.max_rows = s.batch < s.n && urand() < 0.3 ? s.n : s.batch; /* evaluation whole or chunked */
    s.weighted = urand() < 0.5;
    s.x_double = urand() < 0.4;
    s.shuffle = urand() < 0.7;
    s.n_sweeps = 1 + (int)(urand() * 4);
    s.small_nets = urand() < 0.5;
    s.dropout = urand() < 0.3 ? 0.3 : 0;
    s.stop_tol = urand() < 0.3 ? 1e-3 : 0;
    const int64_t n_in = t->net.n_input_cols, n_out = t->net.size[t->net.n_layers - 1];
    const int64_t t_cols = n_out + s.weighted;
    double *Xd = malloc(s.n * n_in * sizeof(double));
    float *Xf = malloc(s.n * n_in * sizeof(float)), *T = malloc(s.n * t_cols * sizeof(float));
    float *p0 = malloc(t->net.n_params * sizeof(float));
    for (int64_t i = 0; i < s.n * n_in; i++)
        Xf[i] = (float)(Xd[i] = urand() * 2 - 1 + 1e-9); /* (a double that rounds) */
    const int weightless_batches = urand() < 0.5;
    for (int64_t r = 0; r < s.n; r++) {
        for (int64_t c = 0; c < n_out; c++)
            T[r * t_cols + c] = (float)urand();
        if (s.weighted)
            T[r * t_cols + n_out] =
                weightless_batches ? ((r / s.batch) % 2 ? 0.f : (float)urand())
                                   : (urand() < 0.6 ? 0.f : (float)urand());
    }
    for (int64_t i = 0; i < t->net.n_params; i++)
        p0[i] = (float)(urand() - 0.5);
    result one = run(t, k, &s, p0, Xd, Xf, T, 1, 0);
    for (int threads = 2; threads <= 5; threads += 3)
        for (int cut = 0; cut <= 1; cut++) {
            result r = run(t, k, &s, p0, Xd, Xf, T, threads, cut);
            compare(t, &one, &r, cut ? "cut training" : "training", &s, threads);
            free(r.w), free(r.v);
        }
    free(one.w), free(one.v), free(Xd), free(Xf), free(T), free(p0);
}

/* 37 members of the symmetry net (two groups of AVX-512's 16 lanes and some) on 64 cases, each
   its own lr and weights, trained for 30 sweeps: on 1 thread in one call, and on `threads` in
   calls of 1-7 sweeps. */
static void check_population(const topology *t, const bp_kernels *k, int threads)
{
    enum { MEMBERS = 37, CASES = 64, SWEEPS = 30 };
    const bp_net *net = &t->net;
    const int64_t n = net->n_params;
    if (!k->population_lanes_f32(net, CASES, 0))
        return;
    float X[CASES * 6], T[CASES], p0[MEMBERS * 32];
    for (int r = 0; r < CASES; r++) { /* the paper's task: is the pattern symmetric? */
        for (int c = 0; c < 6; c++)
            X[r * 6 + c] = (float)((r >> c) & 1);
        T[r] = (float)(((r >> 0) & 1) == ((r >> 5) & 1) && ((r >> 1) & 1) == ((r >> 4) & 1) &&
                       ((r >> 2) & 1) == ((r >> 3) & 1));
    }
    for (int64_t i = 0; i < MEMBERS * n; i++)
        p0[i] = (float)(urand() * 0.6 - 0.3);
    double lr[MEMBERS], momentum[MEMBERS], decay[MEMBERS], tol[MEMBERS];
    for (int m = 0; m < MEMBERS; m++)
        lr[m] = 0.05 + 0.1 * urand(), momentum[m] = 0.9, decay[m] = 0, tol[m] = 0;
    int64_t order[MEMBERS];
    for (int m = 0; m < MEMBERS; m++)
        order[m] = m;
    float *w[2], *v[2], *back[2];
    int status[2][MEMBERS];
    int64_t done[2][MEMBERS];
    double errors[2][MEMBERS * SWEEPS];
    for (int run = 0; run < 2; run++) {
        w[run] = malloc(MEMBERS * n * sizeof(float));
        v[run] = calloc(MEMBERS * n, sizeof(float));
        back[run] = calloc(MEMBERS * 2 * n, sizeof(float));
        memcpy(w[run], p0, MEMBERS * n * sizeof(float));
        memset(status[run], 0, sizeof status[run]);
        memset(done[run], 0, sizeof done[run]);
        bp_train_config cfg = {0};
        cfg.n_samples = cfg.batch_size = CASES;
        cfg.loss = BP_SSE;
        for (int position = 0; position < SWEEPS;) {
            const int64_t chunk = run ? 1 + (int64_t)(urand() * 7) : SWEEPS;
            int64_t sweeps[MEMBERS];
            for (int m = 0; m < MEMBERS; m++)
                sweeps[m] = position + chunk > SWEEPS ? SWEEPS - position : chunk;
            const bp_members members = {lr, momentum, decay, tol, sweeps, 0};
            cfg.n_threads = run ? 1 + (int)(urand() * threads) : 1;
            const int got = k->population_train_f32(
                net, order, MEMBERS, w[run], v[run], back[run], X, 0, T, 0, &cfg, &members,
                status[run], done[run], errors[run] + position, SWEEPS, NULL, NULL);
            EXPECT(got == 0, "population_train returned %d", got);
            position += (int)sweeps[0];
            n_calls++;
        }
    }
    EXPECT(memcmp(w[0], w[1], MEMBERS * n * sizeof(float)) == 0 &&
               memcmp(v[0], v[1], MEMBERS * n * sizeof(float)) == 0 &&
               memcmp(status[0], status[1], sizeof status[0]) == 0 &&
               memcmp(done[0], done[1], sizeof done[0]) == 0 &&
               memcmp(errors[0], errors[1], sizeof errors[0]) == 0,
           "population of %d members cut on up to %d threads differs from one call on 1",
           MEMBERS, threads);
    EXPECT(errors[0][SWEEPS - 1] < errors[0][0], "the population's first member learned nothing");
    for (int run = 0; run < 2; run++)
        free(w[run]), free(v[run]), free(back[run]);
}

/* Where a net's shared weights are described (bp_net's share_runs): runs, and the runs that
   reach into each chunk of 64 parameters. */
#define TIE_CHUNK 64
typedef struct {
    int64_t runs[3 * MAX_EDGES + 3 * MAX_LAYERS], chunk_start[TIE_CHUNK + 1];
    int64_t chunk_runs[TIE_CHUNK * (MAX_EDGES + MAX_LAYERS)];
} sharing;

/* Turn t's dense blocks into shared ones: edge e keeps rows [first_row[e], end_row[e]) (none if
   end <= first: an absent block), and uses the parameters of edge tie[e] (an earlier edge of the
   same shape and rows) if tie[e] >= 0, else its own; each bias its own. */
static void tie_blocks(topology *t, sharing *s, const int *first_row, const int *end_row,
                       const int *tie)
{
    const bp_net *net = &t->net;
    int64_t n_runs = 0, n_params = 0, at[MAX_EDGES];
    for (int e = 0; e < t->src_start[net->n_layers]; e++) {
        const int64_t n_in = t->size[t->src_layer[e]], rows = end_row[e] - first_row[e];
        t->row_start[e] = first_row[e];
        t->row_end[e] = end_row[e];
        if (rows <= 0)
            continue;
        at[e] = tie[e] >= 0 ? at[tie[e]] : n_params;
        n_params += tie[e] >= 0 ? 0 : rows * n_in;
        int64_t *run = s->runs + 3 * n_runs++;
        run[0] = t->w_offset[e] + first_row[e] * n_in, run[1] = at[e], run[2] = rows * n_in;
    }
    for (int l = 0; l < net->n_layers; l++)
        if (t->bias_offset[l] >= 0) {
            int64_t *run = s->runs + 3 * n_runs++;
            run[0] = t->bias_offset[l], run[1] = n_params, run[2] = t->size[l];
            n_params += t->size[l];
        }
    const int64_t n_chunks = (n_params + TIE_CHUNK - 1) / TIE_CHUNK;
    int64_t k = 0;
    for (int64_t c = 0; c < n_chunks; c++) {
        s->chunk_start[c] = k;
        for (int64_t r = 0; r < n_runs; r++)
            if (s->runs[3 * r + 1] < (c + 1) * TIE_CHUNK &&
                s->runs[3 * r + 1] + s->runs[3 * r + 2] > c * TIE_CHUNK)
                s->chunk_runs[k++] = r;
    }
    s->chunk_start[n_chunks] = k;
    t->net.n_params = n_params; /* (n_dense stays the dense arena's) */
    t->net.n_share_runs = n_runs;
    t->net.share_runs = s->runs;
    t->net.share_chunk = TIE_CHUNK;
    t->net.share_chunk_start = s->chunk_start;
    t->net.share_chunk_runs = s->chunk_runs;
    t->net.row_start = t->row_start;
    t->net.row_end = t->row_end;
}

int main(int argc, char **argv)
{
    const int rounds = argc > 1 ? atoi(argv[1]) : 4;
    seed = argc > 2 ? (uint64_t)atoll(argv[2]) : 1;
    const char *only = argc > 3 ? argv[3] : NULL;
    enum { N_NETS = 12 };
    topology nets[N_NETS];
    static sharing tied[3];
    const int sym_act[] = {0, BP_LOGISTIC, BP_LOGISTIC, BP_LOGISTIC};
    const int sym_bias[] = {0, 1, 1, 1}, chain_src[][4] = {{-1}, {0, -1}, {1, -1}};
    const int dag_size[] = {5, 3, 4, 3, 2};
    const int dag_act[] = {0, 0, BP_TANH, BP_LOGISTIC, BP_IDENTITY};
    const int dag_bias[] = {0, 0, 1, 0, 1};
    const int dag_src[][4] = {{-1}, {-1}, {0, -1}, {2, 1, -1}, {3, 0, 2, -1}};
    build(&nets[0], "dag", 5, 2, dag_size, dag_act, dag_bias, dag_src);
    const int wide_size[] = {33, 30, 5};
    build(&nets[1], "wide", 3, 1, wide_size, sym_act, sym_bias, chain_src);
    /* two wide input groups (the bind's batch-major copies) and a narrow one */
    const int groups_size[] = {20, 17, 3, 24, 10};
    const int groups_act[] = {0, 0, 0, BP_TANH, BP_LOGISTIC}, groups_bias[] = {0, 0, 0, 1, 1};
    const int groups_src[][4] = {{-1}, {-1}, {-1}, {0, 1, 2, -1}, {3, 0, -1}};
    build(&nets[2], "groups", 5, 3, groups_size, groups_act, groups_bias, groups_src);
    const int shared_size[] = {4, 5, 5, 3};
    const int shared_src[][4] = {{-1}, {0, -1}, {1, -1}, {2, 1, -1}};
    build(&nets[3], "shared", 4, 1, shared_size, sym_act, sym_bias, shared_src);
    share(&nets[3]);
    const int single_size[] = {1, 5, 1};
    build(&nets[4], "single", 3, 1, single_size, sym_act, sym_bias, chain_src);
    const int symmetry_size[] = {6, 2, 1};
    build(&nets[5], "symmetry", 3, 1, symmetry_size, sym_act, sym_bias, chain_src);
    /* products of several blocks of every variant's cache blocking (BLOCK_K terms <= 256,
       BLOCK_LANES cases <= 512): 300 terms, 550-1,100 cases */
    const int long_size[] = {300, 300, 8};
    build(&nets[6], "long", 3, 1, long_size, sym_act, sym_bias, chain_src);
    /* a wide hidden layer (a batch-major copy) feeding three layers, one without bias, through
       skips (session 26's review of the barriers around that copy and the backward pass) */
    const int skip_size[] = {20, 40, 24, 24, 3};
    const int skip_act[] = {0, BP_TANH, BP_LOGISTIC, BP_TANH, BP_IDENTITY};
    const int skip_bias[] = {0, 1, 1, 0, 1};
    const int skip_src[][4] = {{-1}, {0, -1}, {1, 0, -1}, {2, 1, -1}, {3, 1, -1}};
    build(&nets[7], "skipwide", 5, 1, skip_size, skip_act, skip_bias, skip_src);
    /* the same with edge 4 (h3 <- h1) tied to edge 1 (h2 <- h1), and y <- h1's row 0 absent */
    build(&nets[8], "sharedwide", 5, 1, skip_size, skip_act, skip_bias, skip_src);
    const int sw_first[] = {0, 0, 0, 0, 0, 0, 1}, sw_end[] = {40, 24, 24, 24, 24, 3, 3};
    const int sw_tie[] = {-1, -1, -1, -1, 1, -1, -1};
    tie_blocks(&nets[8], &tied[0], sw_first, sw_end, sw_tie);
    /* absent blocks: h2 <- h1 absent where h2 <- x adds to it (no loop in the backward step to
       h1 for it), and y <- h1 absent on its own (the zeroing loop) */
    const int ab_size[] = {20, 40, 20, 3};
    const int ab_act[] = {0, BP_TANH, BP_LOGISTIC, BP_IDENTITY};
    const int ab_bias[] = {0, 1, 1, 1};
    const int ab_src[][4] = {{-1}, {0, -1}, {0, 1, -1}, {2, 1, -1}};
    const int no_tie[] = {-1, -1, -1, -1, -1};
    build(&nets[9], "absent", 4, 1, ab_size, ab_act, ab_bias, ab_src);
    const int ab_first[] = {0, 0, 0, 0, 0}, ab_end[] = {40, 20, 0, 3, 3};
    tie_blocks(&nets[9], &tied[1], ab_first, ab_end, no_tie);
    build(&nets[10], "absent0", 4, 1, ab_size, ab_act, ab_bias, ab_src);
    const int ab0_end[] = {40, 20, 20, 3, 0};
    tie_blocks(&nets[10], &tied[2], ab_first, ab0_end, no_tie);
    /* two input groups, one wide, and a wide hidden layer feeding two layers */
    const int gs_size[] = {17, 3, 48, 16, 2};
    const int gs_act[] = {0, 0, BP_TANH, BP_LOGISTIC, BP_LOGISTIC};
    const int gs_bias[] = {0, 0, 0, 1, 1};
    const int gs_src[][4] = {{-1}, {-1}, {1, 0, -1}, {2, 1, -1}, {2, 3, 0, -1}};
    build(&nets[11], "groupskip", 5, 2, gs_size, gs_act, gs_bias, gs_src);
    const char *names[] = {"baseline", "avx2", "avx512"};
    bp_runtime_init();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (only && strcmp(only, names[i]) != 0)
            continue;
        const bp_kernels *k = bp_kernels_named(names[i]);
        if (!k)
            continue; /* not built for, or not run by, this CPU */
        const int before = failures;
        for (int round = 0; round < rounds; round++) {
            for (int j = 0; j < N_NETS; j++)
                if (j != 5) /* (the symmetry net: the population's) */
                    check_training(&nets[j], k, j == 6);
            check_population(&nets[5], k, round % 2 ? 5 : 2);
        }
        printf("%-4s %s: %d round(s)\n", failures == before ? "ok" : "FAIL", k->name, rounds);
    }
    printf("%s: %d failure(s); %ld calls, %ld paused by a deadline, %ld stopped\n",
           failures ? "FAILED" : "passed", failures, n_calls, n_paused, n_stopped);
    return failures != 0;
}
