/* kernels_avx2.c: the kernels for x86-64 with AVX2 and FMA: 16 registers of 32 bytes.
 *   broadcast tile 6 x 2 vectors = 12 accumulators + 2 B vectors + 1 broadcast (15 registers);
 *   dot tile 2 x 4 = 8 accumulators + 2 + 4 operands (14 registers).
 * Empty on other CPUs. */
#include "internal.h"

#if BP_X86
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx2,fma")
#endif
#include <immintrin.h>

#define ISA avx2
#define VBYTES 32
#define TILE_ROWS 6
#define TILE_VECTORS 2
#define DOT_ROWS 2
#define DOT_COLS 4
#define VFMA_F32(a, b, c) ((vf32)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(c)))
#define VFMA_F64(a, b, c) ((vf64)_mm256_fmadd_pd((__m256d)(a), (__m256d)(b), (__m256d)(c)))
#define VMIN_F32(a, b) ((vf32)_mm256_min_ps((__m256)(a), (__m256)(b)))
#define VMIN_F64(a, b) ((vf64)_mm256_min_pd((__m256d)(a), (__m256d)(b)))
#define VMAX_F32(a, b) ((vf32)_mm256_max_ps((__m256)(a), (__m256)(b)))
#define VMAX_F64(a, b) ((vf64)_mm256_max_pd((__m256d)(a), (__m256d)(b)))
/* lane i <- lane idx[i] mod 8 of t (vpermps) */
#define VPERMUTE_F32(t, idx) ((vf32)_mm256_permutevar8x32_ps((__m256)(t), (__m256i)(idx)))
#include "isa.inc.c"

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
