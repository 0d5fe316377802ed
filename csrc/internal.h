/* internal.h: what the translation units of the core share and the Python side never sees: the
 * workspace struct (one layout for every instruction set), small helpers, and the kernel tables
 * each per-ISA translation unit (kernels_<isa>.c) defines. */
#ifndef BPFAST_INTERNAL_H
#define BPFAST_INTERNAL_H

#include "bpfast.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BP_RESTRICT __restrict
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)

/* The x86-64 variants need GCC or clang target pragmas, immintrin.h and __builtin_cpu_supports;
   everywhere else (aarch64, ...) only the baseline variant is built. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BP_X86 1
#else
#define BP_X86 0
#endif

/* Activation rows are padded to whole 64-byte lines (16 floats, 8 doubles): the widest vector of
   any variant, so one workspace layout serves every instruction set. */
#define BP_PAD_BYTES 64

/* The stride, in values of `value_bytes`, of rows of n values: whole 64-byte lines, an odd number
   of them. The L1 cache maps addresses to its 64 sets with a 4 KiB period, so rows L lines apart
   use 64 / gcd(L, 64) sets: a product walking down a column of rows of 8,192 floats (32 KiB) kept
   every line in one set of 8 ways. An odd L spreads consecutive rows over all 64 sets. */
static inline int64_t bp_row_stride(int64_t n, int64_t value_bytes)
{
    int64_t lines = (n * value_bytes + BP_PAD_BYTES - 1) / BP_PAD_BYTES;
    lines += (lines & 1) == 0;
    return lines * BP_PAD_BYTES / value_bytes;
}

/* The buffer a product packs a block of its B matrix into (kernels.inc.c: BLOCK_K x BLOCK_LANES
   of every variant fit): sized for a core's L2 cache. */
#define BP_PACK_BYTES 262144
/* ... and the one it packs rows of a transposed A into: a few of kernels.inc.c's 128 KiB blocks
   of A's rows. */
#define BP_PACK_A_BYTES 524288

/* Carve `bytes` from *cursor at the next 64-byte boundary. The cursor is an integer so that the
   workspace layout can also run as a pure count from 0. */
static inline void *take_aligned(uintptr_t *cursor, size_t bytes)
{
    const uintptr_t start = (*cursor + 63) & ~(uintptr_t)63;
    *cursor = start + bytes;
    return (void *)start;
}

/* The buffers of a training run or a forward pass. */
#define BP_WORKSPACE_STRUCT(REAL, SFX)                                                            \
    struct bp_workspace_##SFX {                                                                  \
        int64_t max_rows;                                                                        \
        int64_t ld;         /* the bound batch's row stride (bp_row_stride of its rows) */      \
        REAL **y;           /* [n_layers] activations (size[l], ld); inputs are rows of x_batch */\
        REAL **dy;          /* [n_layers] dE/dy, turned into dE/dx in place (computed layers) */ \
        REAL **y_rows;      /* [n_layers] batch-major copies (max_rows, ld_rows[l]) of the       \
                               sources wide enough for broadcast weight gradients; else NULL */  \
        int64_t *ld_rows;   /* [n_layers] bp_row_stride of the size */                           \
        double *row_error;  /* [n_outputs] each output unit's share of E */                      \
        int *row_within;    /* [n_outputs] whether each output is within stop_tol everywhere */  \
        REAL *error_terms;  /* [2 n_outputs, ld] lane views' loss terms and stop-test misses */ \
        REAL *x_batch;      /* [n_input_cols, ld] the bound batch's inputs, feature-major */     \
        REAL *pack;         /* [BP_PACK_BYTES] a block of a product's B, packed panel by panel */\
        REAL *pack_a;       /* [BP_PACK_A_BYTES] rows of a transposed A, packed tile by tile */  \
        REAL *t_batch;      /* [n_outputs + 1, ld] its targets, then its case weights */        \
        int64_t *order;     /* [n_samples] the case order of the current sweep */                \
        int64_t n_order;                                                                         \
        const REAL *bound_x;/* the cases x_batch holds when it holds a whole set, else NULL */   \
        double error;       /* shared results, written by one thread, read after a barrier */    \
        int all_within;                                                                          \
        int status;                                                                              \
        int64_t n_done;     /* sweeps finished by the current train call */                      \
        int weights_non_finite; /* set by the update when a weight became non-finite */          \
        double grad_scale;  /* the current update's clipping factor */                           \
        uint64_t dropout_key; /* the current batch's dropout masks (see bp_train_config) */      \
        int small_net;      /* the current call runs small_nets.inc.c's whole-net loop */       \
        const bp_stop *stop;/* the current call's stop request, or NULL */                       \
        int stop_seen[2];   /* a thread saw it in a product's block of this parity (product_omp) */\
        REAL *start_params, *start_velocity; /* [n_params] a mini-batch sweep's start, or NULL */\
        REAL *dense_params; /* [n_dense] a shared net's parameters in their slots, else NULL */  \
        REAL *dense_grad;   /* [n_dense] ... and the slots' gradients while training */          \
        REAL *recurrent;    /* a recurrent net's steps side by side (recurrent.inc.c), or NULL */\
        uint64_t start_rng; /* ... and its shuffling state */                                    \
        int in_sweep;       /* 1: a sweep is paused (BP_PAUSED), to go on at resume_at, ... */   \
        int64_t resume_at;  /* ... the first case of its next batch */                           \
        uint64_t key_rng;   /* the shuffling state before the current batch's dropout key */     \
        int64_t batches_run;/* batches the current train call ran */                             \
        int64_t lane0;      /* the batch's lane this workspace's lane 0 is: 0, but in a view */  \
        REAL **view_ptrs;   /* 3 n_layers pointers a thread for lane views (train), or NULL */   \
        void *arena;        /* the one allocation the above point into */                        \
    };
BP_WORKSPACE_STRUCT(float, f32)
BP_WORKSPACE_STRUCT(double, f64)
#undef BP_WORKSPACE_STRUCT

/* The stream of dropout masks of unit u of layer l under `key` (splitmix64's finaliser of a
   point on the Weyl sequence); each case's bit then comes from dropout_keep. */
static inline uint32_t bp_dropout_stream(uint64_t key, int l, int64_t u)
{
    uint64_t z = key + 0x9E3779B97F4A7C15ull * ((((uint64_t)l) << 32) + (uint64_t)u + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)(z ^ (z >> 31));
}

/* Hashes below this are dropped: the probability `dropout` in 32 bits. */
static inline uint32_t bp_dropout_threshold(double dropout)
{
    return (uint32_t)(dropout * 4294967296.0);
}

/* Sources of at least 16 units (a 64-byte line of floats) get their weight gradients as broadcast
   tiles over a batch-major copy (no horizontal sums); narrower ones as lane dot products. The same
   for both precisions, so that a net takes the same paths in either. */
#define BP_WIDE_SOURCE(size) ((size) >= 16)

/* The kernel table of each variant, defined by kernels_<isa>.c. */
extern const bp_kernels bp_kernels_baseline;
#if BP_X86
extern const bp_kernels bp_kernels_avx2;
extern const bp_kernels bp_kernels_avx512;
#endif

#endif
