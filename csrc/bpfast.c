/* bpfast.c: instantiates the kernels and the training driver for float and double, and reports
 * how the library was built. */
#include "bpfast.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define BP_RESTRICT __restrict
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* Carve `bytes` from *cursor at the next 64-byte boundary (a cache line; the widest SIMD load). */
static void *take_aligned(char **cursor, size_t bytes)
{
    char *start = (char *)(((uintptr_t)*cursor + 63) & ~(uintptr_t)63);
    *cursor = start + bytes;
    return start;
}

#define REAL float
#define SFX f32
#define EXP expf
#define TANH tanhf
#define FABS fabsf
#include "kernels.inc.c"
#include "train.inc.c"
#undef REAL
#undef SFX
#undef EXP
#undef TANH
#undef FABS

#define REAL double
#define SFX f64
#define EXP exp
#define TANH tanh
#define FABS fabs
#include "kernels.inc.c"
#include "train.inc.c"
#undef REAL
#undef SFX
#undef EXP
#undef TANH
#undef FABS

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

const char *bp_simd_level(void)
{
#if defined(__AVX512F__)
    return "avx512f";
#elif defined(__AVX2__) && defined(__FMA__)
    return "avx2+fma";
#elif defined(__AVX__)
    return "avx";
#elif defined(__SSE2__)
    return "sse2";
#elif defined(__ARM_NEON)
    return "neon";
#else
    return "generic";
#endif
}
