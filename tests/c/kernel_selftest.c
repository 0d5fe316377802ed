/* kernel_selftest.c: the compiled core checked on its own, without Python, for CPUs where the
 * Python tests cannot run here (aarch64 under qemu-user: .ci/aarch64), and natively by
 * tests/test_build.py. For every kernel variant the CPU runs, on four nets (the symmetry chain, a
 * DAG with two input groups, a skip connection, tanh and identity units and a layer without bias,
 * a wide chain, and a net with shared weights: tied biases, and a block with an absent row whose
 * other rows share another block's parameters):
 *   - the float64 error equals a plain-loop forward pass;
 *   - the float64 gradient matches central finite differences of that error;
 *   - the float32 gradient matches the float64 one;
 *   - training gives the same bits on 1 and 2 threads, and with and without the whole-net loop
 *     where a net takes it, and lowers the error.
 * Prints one line per check; exits 1 if any fails. */
#include "selftest_nets.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_ROWS 37

static int failures = 0;

static void check(int ok, const char *what, const char *net, const char *isa, double value)
{
    printf("%-4s %-48s %-8s %-9s %.3g\n", ok ? "ok" : "FAIL", what, net, isa, value);
    failures += !ok;
}

/* The dense arena of params p: each run copied into its slots, the rest 0. */
static void expand(const bp_net *net, const double *p, double *dense)
{
    if (!net->share_runs) {
        memcpy(dense, p, (size_t)net->n_dense * sizeof *dense);
        return;
    }
    memset(dense, 0, (size_t)net->n_dense * sizeof *dense);
    for (int64_t r = 0; r < net->n_share_runs; r++)
        for (int64_t i = 0; i < net->share_runs[3 * r + 2]; i++)
            dense[net->share_runs[3 * r] + i] = p[net->share_runs[3 * r + 1] + i];
}

/* E = 1/2 sum (y - t)^2 by plain loops over cases, layers and units. */
static double plain_error(const topology *t, const double *params, const double *X,
                          const double *T)
{
    const bp_net *net = &t->net;
    double y[MAX_LAYERS][64], error = 0, p[1024];
    expand(net, params, p);
    for (int r = 0; r < N_ROWS; r++) {
        for (int l = 0; l < net->n_layers; l++) {
            for (int o = 0; o < net->size[l]; o++) {
                if (l < net->n_inputs) {
                    y[l][o] = X[r * net->n_input_cols + net->input_col[l] + o];
                    continue;
                }
                double x = net->bias_offset[l] >= 0 ? p[net->bias_offset[l] + o] : 0;
                for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
                    const int s = net->src_layer[e];
                    for (int c = 0; c < net->size[s]; c++)
                        x += p[net->w_offset[e] + o * net->size[s] + c] * y[s][c];
                }
                y[l][o] = net->activation[l] == BP_LOGISTIC ? 1 / (1 + exp(-x))
                          : net->activation[l] == BP_TANH   ? tanh(x) : x;
            }
        }
        const int out = net->n_layers - 1;
        for (int o = 0; o < net->size[out]; o++) {
            const double d = y[out][o] - T[r * net->size[out] + o];
            error += 0.5 * d * d;
        }
    }
    return error;
}

static bp_train_config config(int n_threads, int small_nets)
{
    bp_train_config cfg = {0};
    cfg.n_samples = cfg.batch_size = N_ROWS;
    cfg.loss = BP_SSE;
    cfg.dead_zone_off = 0.2;
    cfg.dead_zone_on = 0.8;
    cfg.n_threads = n_threads;
    cfg.small_nets = small_nets;
    return cfg;
}

static void check_variant(const topology *t, const bp_kernels *k)
{
    const bp_net *net = &t->net;
    const int64_t n = net->n_params, n_in = net->n_input_cols;
    const int64_t n_out = net->size[net->n_layers - 1];
    uint64_t seed = 12345;
    double *p = malloc(n * sizeof *p), *g = malloc(n * sizeof *g), *X = malloc(N_ROWS * n_in * 8);
    double *T = malloc(N_ROWS * n_out * sizeof *T);
    float *p32 = malloc(n * sizeof *p32), *g32 = malloc(n * sizeof *g32);
    float *X32 = malloc(N_ROWS * n_in * 4), *T32 = malloc(N_ROWS * n_out * 4);
    for (int64_t i = 0; i < n; i++)
        p32[i] = (float)(p[i] = uniform(&seed) - 0.5);
    for (int64_t i = 0; i < N_ROWS * n_in; i++)
        X32[i] = (float)(X[i] = uniform(&seed) < 0.5);
    for (int64_t i = 0; i < N_ROWS * n_out; i++)
        T32[i] = (float)(T[i] = uniform(&seed) < 0.3);
    bp_workspace_f64 *ws = bp_workspace_create_f64(net, N_ROWS, N_ROWS, BP_WS_TRAINING);
    bp_workspace_f32 *ws32 = bp_workspace_create_f32(net, N_ROWS, N_ROWS, BP_WS_TRAINING);
    bp_train_config cfg = config(1, 1);
    int within;

    const double error = k->loss_gradient_f64(net, ws, g, p, X, T, N_ROWS, &cfg, &within);
    const double plain = plain_error(t, p, X, T);
    check(fabs(error - plain) <= 1e-12 * plain, "float64 error = plain loops", t->name, k->name,
          fabs(error - plain) / plain);

    /* central differences: truncation ~h^2, rounding ~1e-16 E / h; relative to the largest
       component of the gradient */
    double worst = 0, largest = 0;
    for (int64_t i = 0; i < n; i++)
        largest = fabs(g[i]) > largest ? fabs(g[i]) : largest;
    for (int64_t i = 0; i < n; i++) {
        const double h = 1e-6, keep = p[i];
        p[i] = keep + h;
        const double up = k->evaluate_f64(net, ws, p, X, T, &cfg, &within);
        p[i] = keep - h;
        const double down = k->evaluate_f64(net, ws, p, X, T, &cfg, &within);
        p[i] = keep;
        const double diff = fabs((up - down) / (2 * h) - g[i]) / largest;
        worst = diff > worst ? diff : worst;
    }
    check(worst < 1e-7, "float64 gradient = finite differences", t->name, k->name, worst);

    k->loss_gradient_f32(net, ws32, g32, p32, X32, T32, N_ROWS, &cfg, &within);
    worst = 0;
    for (int64_t i = 0; i < n; i++) {
        const double diff = fabs(g32[i] - g[i]) / largest;
        worst = diff > worst ? diff : worst;
    }
    check(worst < 1e-5, "float32 gradient = float64 gradient", t->name, k->name, worst);

    /* 300 sweeps three ways: 1 thread with and without the whole-net loop, and 2 threads */
    const bp_phase phase = {.lr = 0.3, .momentum = 0.9, .rule = BP_MOMENTUM};
    float *runs[3];
    double errors[300];
    for (int run = 0; run < 3; run++) {
        float *w = runs[run] = malloc(n * sizeof *w), *v = calloc(n, sizeof *v);
        memcpy(w, p32, n * sizeof *w);
        bp_train_config c = config(run == 2 ? 2 : 1, run != 1);
        uint64_t rng = 1;
        int status;
        k->train_f32(net, ws32, w, v, g32, X32, T32, &c, &phase, 300, &rng, errors, &status);
        free(v);
    }
    if (k->small_net_f32(net))
        check(memcmp(runs[0], runs[1], n * sizeof(float)) == 0,
              "float32 training: whole-net loop = layers", t->name, k->name, 0);
    check(memcmp(runs[0], runs[2], n * sizeof(float)) == 0,
          "float32 training: 2 threads = 1 thread", t->name, k->name, 0);
    check(errors[299] < 0.8 * errors[0], "float32 training lowers the error", t->name, k->name,
          errors[299] / errors[0]);
    for (int run = 0; run < 3; run++)
        free(runs[run]);
    bp_workspace_free_f64(ws);
    bp_workspace_free_f32(ws32);
    free(p), free(g), free(X), free(T), free(p32), free(g32), free(X32), free(T32);
}

int main(void)
{
    topology nets[4];
    const int sym_size[] = {6, 2, 1}, sym_act[] = {0, BP_LOGISTIC, BP_LOGISTIC};
    const int sym_bias[] = {0, 1, 1}, sym_src[][4] = {{-1}, {0, -1}, {1, -1}};
    build(&nets[0], "symmetry", 3, 1, sym_size, sym_act, sym_bias, sym_src);
    const int dag_size[] = {5, 3, 4, 3, 2};
    const int dag_act[] = {0, 0, BP_TANH, BP_LOGISTIC, BP_IDENTITY};
    const int dag_bias[] = {0, 0, 1, 0, 1};
    const int dag_src[][4] = {{-1}, {-1}, {0, -1}, {2, 1, -1}, {3, 0, 2, -1}};
    build(&nets[1], "dag", 5, 2, dag_size, dag_act, dag_bias, dag_src);
    const int wide_size[] = {20, 30, 5}, wide_src[][4] = {{-1}, {0, -1}, {1, -1}};
    build(&nets[2], "wide", 3, 1, wide_size, sym_act, sym_bias, wide_src);
    const int shared_size[] = {4, 5, 5, 3};
    const int shared_act[] = {0, BP_LOGISTIC, BP_LOGISTIC, BP_LOGISTIC};
    const int shared_bias[] = {0, 1, 1, 1}, shared_src[][4] = {{-1}, {0, -1}, {1, -1}, {2, 1, -1}};
    build(&nets[3], "shared", 4, 1, shared_size, shared_act, shared_bias, shared_src);
    share(&nets[3]);
    const char *names[] = {"baseline", "avx2", "avx512"};
    bp_runtime_init();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const bp_kernels *k = bp_kernels_named(names[i]);
        if (!k)
            continue; /* not built for, or not run by, this CPU */
        for (int j = 0; j < 4; j++)
            check_variant(&nets[j], k);
    }
    printf("%s: %d check(s) failed\n", failures ? "FAILED" : "passed", failures);
    return failures != 0;
}
