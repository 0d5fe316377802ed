/* kernels_baseline.c: the kernels every CPU runs: SSE2 on x86-64 (16 registers of 16 bytes, no
 * FMA), NEON on aarch64 (32 registers of 16 bytes, FMA), plain C vectors elsewhere.
 *   x86-64 SSE2: broadcast tile 4 x 3 vectors = 12 accumulators + the broadcast + the product;
 *                dot tile 2 x 4 = 8 accumulators + 2 + 4 operands.
 *   aarch64:     broadcast tile 6 x 3 = 18 accumulators + 3 + 6 broadcasts (the fmla below takes
 *                whole vectors: 6 x 4 left one vector to spill every k step); dot tile 4 x 4 =
 *                16 + 4 + 4. bench/spills.py finds no stack access in any tile's loop (GCC 12
 *                cross compiler); not timed on a real aarch64 CPU yet. */
#include "internal.h"

#define ISA baseline
#define VBYTES 16
#if defined(__aarch64__)
#include <arm_neon.h>
#define TILE_ROWS 6
#define TILE_VECTORS 3
#define DOT_ROWS 4
#define DOT_COLS 4
/* fmla as inline assembly on the vectors as they are: with vfmaq_f32, whose operands are cast
   between GCC's vector types and NEON's, GCC 12 kept every register tile's accumulators in memory
   and stored them all to the stack on every k step (bench/spills.py: 14 stack accesses a step in
   the 6 x 4 tile, 8 in the 4 x 4 dot tile; a small tile of 4 x 2 alike). Same instruction, same
   bits. */
#define VFMA_F32(a, b, c)                                                                        \
    ({                                                                                           \
        vf32 sum_ = (c);                                                                         \
        __asm__("fmla %0.4s, %1.4s, %2.4s" : "+w"(sum_) : "w"((vf32)(a)), "w"((vf32)(b)));     \
        sum_;                                                                                    \
    })
#define VFMA_F64(a, b, c)                                                                        \
    ({                                                                                           \
        vf64 sum_ = (c);                                                                         \
        __asm__("fmla %0.2d, %1.2d, %2.2d" : "+w"(sum_) : "w"((vf64)(a)), "w"((vf64)(b)));     \
        sum_;                                                                                    \
    })
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
