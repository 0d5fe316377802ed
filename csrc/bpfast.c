/* bpfast.c: instantiates the kernels for float and double, for each instruction set (baseline,
 * AVX2+FMA, AVX-512 on x86-64) and for serial and OpenMP execution, and picks the best instruction
 * set the CPU supports at run time. The baseline build flags stay portable (no -march=native). */
#include "bpfast.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define BP_RESTRICT __restrict

/* Per-ISA variants need GCC or clang target pragmas and __builtin_cpu_supports. */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define BP_X86_VARIANTS 1
#else
#define BP_X86_VARIANTS 0
#endif
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* Carve `bytes` from *cursor at the next 64-byte boundary (a cache line; the widest SIMD load).
   The cursor is an integer so that the workspace layout can also run as a pure count from 0. */
static void *take_aligned(uintptr_t *cursor, size_t bytes)
{
    const uintptr_t start = (*cursor + 63) & ~(uintptr_t)63;
    *cursor = start + bytes;
    return (void *)start;
}

/* Vector-valued static functions never cross a library boundary, so GCC's note that their ABI
   differs between instruction sets does not concern us. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

/* Every vector is 64 bytes whatever the instruction set: one AVX-512 register, two AVX2 ones,
   four SSE2 ones. The compiler splits it as the target needs. */
typedef float vf32 __attribute__((vector_size(64), aligned(64)));
typedef int32_t vi32 __attribute__((vector_size(64), aligned(64)));
typedef double vf64 __attribute__((vector_size(64), aligned(64)));
typedef int64_t vi64 __attribute__((vector_size(64), aligned(64)));

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(CAT(CAT(name, SFX), ISA), PARNAME)
#define FNS(name) CAT(CAT(CAT(name, SFX), ISA), s)
#define FNP(name) CAT(CAT(CAT(name, SFX), ISA), p)
#define API(name) CAT(CAT(name, SFX), ISA)
#define WS CAT(bp_workspace, SFX)

/* ---- one precision, every instruction set: BP_INSTANTIATE_ISA includes the templates ------- */

#define PRECISION_FLOAT 1
#include "instantiate.inc.c"
#undef PRECISION_FLOAT

#define PRECISION_DOUBLE 1
#include "instantiate.inc.c"
#undef PRECISION_DOUBLE

/* ---- run-time choice of instruction set --------------------------------------------------- */

#define KERNEL_TABLE(isa_name, ISA_ID)                                                           \
    static const bp_kernels kernels_##ISA_ID = {                                                 \
        isa_name,                                                                                \
        forward_f32_##ISA_ID, loss_gradient_f32_##ISA_ID, momentum_update_f32_##ISA_ID,          \
        train_f32_##ISA_ID, evaluate_f32_##ISA_ID, logistic_f32_##ISA_ID,                        \
        forward_f64_##ISA_ID, loss_gradient_f64_##ISA_ID, momentum_update_f64_##ISA_ID,          \
        train_f64_##ISA_ID, evaluate_f64_##ISA_ID, logistic_f64_##ISA_ID,                        \
    };
KERNEL_TABLE("baseline", baseline)
#if BP_X86_VARIANTS
KERNEL_TABLE("avx2", avx2)
KERNEL_TABLE("avx512", avx512)
#endif

static int cpu_has(const char *isa)
{
    if (strcmp(isa, "baseline") == 0)
        return 1;
#if BP_X86_VARIANTS
    __builtin_cpu_init();
    if (strcmp(isa, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(isa, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return 0;
}

static const bp_kernels *const all_kernels[] = {
#if BP_X86_VARIANTS
    &kernels_avx512, &kernels_avx2,
#endif
    &kernels_baseline,
};

const bp_kernels *bp_kernels_named(const char *name)
{
    for (size_t i = 0; i < sizeof all_kernels / sizeof all_kernels[0]; i++)
        if ((name == NULL || name[0] == '\0' || strcmp(name, all_kernels[i]->name) == 0) &&
            cpu_has(all_kernels[i]->name))
            return all_kernels[i];
    return NULL;
}

int bp_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int bp_openmp_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
