/* kernels_baseline.c: the kernels every CPU runs: SSE2 on x86-64 (16 registers of 16 bytes, no
 * FMA), NEON on aarch64 (32 registers of 16 bytes, FMA), plain C vectors elsewhere.
 *   x86-64 SSE2: broadcast tile 4 x 3 vectors = 12 accumulators + the broadcast + the product;
 *                dot tile 2 x 4 = 8 accumulators + 2 + 4 operands.
 *   aarch64:     broadcast tile 6 x 4 = 24 accumulators + 4 + 1; dot tile 4 x 4 = 16 + 4 + 4.
 *                (GCC 12 keeps the accumulators in registers there but also stores a copy to the
 *                stack every iteration, which bench/spills.py reports; not measured on a real
 *                aarch64 CPU yet.) */
#include "internal.h"

#define ISA baseline
#define VBYTES 16
#if defined(__aarch64__)
#include <arm_neon.h>
#define TILE_ROWS 6
#define TILE_VECTORS 4
#define DOT_ROWS 4
#define DOT_COLS 4
#define VFMA_F32(a, b, c) ((vf32)vfmaq_f32((float32x4_t)(c), (float32x4_t)(a), (float32x4_t)(b)))
#define VFMA_F64(a, b, c) ((vf64)vfmaq_f64((float64x2_t)(c), (float64x2_t)(a), (float64x2_t)(b)))
#define VMIN_F32(a, b) ((vf32)vminq_f32((float32x4_t)(a), (float32x4_t)(b)))
#define VMIN_F64(a, b) ((vf64)vminq_f64((float64x2_t)(a), (float64x2_t)(b)))
#define VMAX_F32(a, b) ((vf32)vmaxq_f32((float32x4_t)(a), (float32x4_t)(b)))
#define VMAX_F64(a, b) ((vf64)vmaxq_f64((float64x2_t)(a), (float64x2_t)(b)))
#else
#define TILE_ROWS 4
#define TILE_VECTORS 3
#define DOT_ROWS 2
#define DOT_COLS 4
#define VFMA_F32(a, b, c) ((a) * (b) + (c))
#define VFMA_F64(a, b, c) ((a) * (b) + (c))
#include <emmintrin.h>
#define VMIN_F32(a, b) ((vf32)_mm_min_ps((__m128)(a), (__m128)(b)))
#define VMIN_F64(a, b) ((vf64)_mm_min_pd((__m128d)(a), (__m128d)(b)))
#define VMAX_F32(a, b) ((vf32)_mm_max_ps((__m128)(a), (__m128)(b)))
#define VMAX_F64(a, b) ((vf64)_mm_max_pd((__m128d)(a), (__m128d)(b)))
#endif
#include "isa.inc.c"
