/* kernels_avx512.c: the kernels for x86-64 with AVX-512 (F, DQ, VL, BW): 32 registers of 64 bytes.
 *   broadcast tile 6 x 4 vectors = 24 accumulators + 4 B vectors + 1 broadcast (29 registers);
 *   dot tile 4 x 4 = 16 accumulators + 4 + 4 operands (24 registers).
 * Empty on other CPUs. */
#include "internal.h"

#if BP_X86
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")
#endif
#include <immintrin.h>

#define ISA avx512
#define VBYTES 64
#define TILE_ROWS 6
#define TILE_VECTORS 4
#define DOT_ROWS 4
#define DOT_COLS 4
#define VFMA_F32(a, b, c) ((vf32)_mm512_fmadd_ps((__m512)(a), (__m512)(b), (__m512)(c)))
#define VFMA_F64(a, b, c) ((vf64)_mm512_fmadd_pd((__m512d)(a), (__m512d)(b), (__m512d)(c)))
#define VMIN_F32(a, b) ((vf32)_mm512_min_ps((__m512)(a), (__m512)(b)))
#define VMIN_F64(a, b) ((vf64)_mm512_min_pd((__m512d)(a), (__m512d)(b)))
#define VMAX_F32(a, b) ((vf32)_mm512_max_ps((__m512)(a), (__m512)(b)))
#define VMAX_F64(a, b) ((vf64)_mm512_max_pd((__m512d)(a), (__m512d)(b)))
/* lane i <- lane idx[i] mod 16 of t (vpermps) */
#define VPERMUTE_F32(t, idx) ((vf32)_mm512_permutexvar_ps((__m512i)(idx), (__m512)(t)))
#include "isa.inc.c"

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
