/* isa.inc.c: every kernel of one instruction set, both precisions, serial and OpenMP, and the
 * variant's kernel table bp_kernels_<ISA>. Included by kernels_<isa>.c, which defines first:
 *   ISA                       the variant's name (baseline, avx2, avx512)
 *   VBYTES                    bytes per vector register
 *   TILE_ROWS, TILE_VECTORS   the broadcast tile: rows x vectors of accumulators
 *   DOT_ROWS, DOT_COLS        the dot tile: rows x columns of accumulators
 *   VFMA_F32, VFMA_F64        fused a * b + c on vectors where the ISA has it, else a * b + c
 *   VMIN_*, VMAX_*            one instruction each: VMIN(a, b) = a < b ? a : b, VMAX(a, b) =
 *                             a > b ? a : b, either NaN where b is NaN (a is never NaN here)
 *   VPERMUTE_F32 (optional)   lane i of the result is lane idx[i] mod VW of a float32 vector, one
 *                             instruction; where it is defined, float32 exp uses a table
 * The build sets -ffp-contract=off: the compiler never fuses on its own, so every copy of a kernel
 * (serial, OpenMP, any inlining) rounds the same way, and the fused ones are written out. */
#ifdef _OPENMP
#include <omp.h>
#endif

/* Vector-valued static functions never cross a library boundary, so GCC's note that their ABI
   differs between instruction sets does not concern us. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

typedef float vf32 __attribute__((vector_size(VBYTES)));
typedef int32_t vi32 __attribute__((vector_size(VBYTES)));
typedef double vf64 __attribute__((vector_size(VBYTES)));
typedef int64_t vi64 __attribute__((vector_size(VBYTES)));
/* 32-bit lanes, as many as a vector of the precision has: dropout's hashes */
typedef uint32_t vu32_f32 __attribute__((vector_size(VBYTES)));
typedef uint32_t vu32_f64 __attribute__((vector_size(VBYTES / 2)));
/* the bits of a float64 vector, unsigned (shifts that carry bits out are defined); a float32
   vector's are vu32_f32 */
typedef uint64_t vu64 __attribute__((vector_size(VBYTES)));
/* For loads and stores: any alignment, and allowed to alias the arrays of REAL they read. */
typedef float uvf32 __attribute__((vector_size(VBYTES), aligned(4), may_alias));
typedef double uvf64 __attribute__((vector_size(VBYTES), aligned(8), may_alias));

#define FN(name) CAT(CAT(CAT(name, SFX), ISA), PARNAME)
#define FNS(name) CAT(CAT(CAT(name, SFX), ISA), s)
#define FNP(name) CAT(CAT(CAT(name, SFX), ISA), p)
#define API(name) CAT(CAT(name, SFX), ISA)
#define WS CAT(bp_workspace, SFX)

#define REAL float
#define SFX f32
#define VREAL vf32
#define UVREAL uvf32
#define VINT vi32
#define VBITS vu32_f32
#define VU32 vu32_f32
#define ITYPE int32_t
#define VW (VBYTES / 4)
#define VFMA VFMA_F32
#define VMIN VMIN_F32
#define VMAX VMAX_F32
#define BP_DOUBLE 0
#define SQRT sqrtf
#define FABS fabsf
#include "variant.inc.c"
#undef REAL
#undef SFX
#undef VREAL
#undef UVREAL
#undef VINT
#undef VBITS
#undef VU32
#undef ITYPE
#undef VW
#undef VFMA
#undef VMIN
#undef VMAX
#undef BP_DOUBLE
#undef SQRT
#undef FABS

#define REAL double
#define SFX f64
#define VREAL vf64
#define UVREAL uvf64
#define VINT vi64
#define VBITS vu64
#define VU32 vu32_f64
#define ITYPE int64_t
#define VW (VBYTES / 8)
#define VFMA VFMA_F64
#define VMIN VMIN_F64
#define VMAX VMAX_F64
#define BP_DOUBLE 1
#define SQRT sqrt
#define FABS fabs
#include "variant.inc.c"

#define KERNEL_TABLE(ISA_ID)                                                                     \
    const bp_kernels CAT(bp_kernels, ISA_ID) = {                                                 \
        #ISA_ID,                                                                                 \
        forward_f32_##ISA_ID, loss_gradient_f32_##ISA_ID, update_f32_##ISA_ID,                  \
        train_f32_##ISA_ID, evaluate_f32_##ISA_ID, unit_function_f32_##ISA_ID,                   \
        small_net_f32_##ISA_ID, population_lanes_f32_##ISA_ID, population_train_f32_##ISA_ID,    \
        forward_f64_##ISA_ID, loss_gradient_f64_##ISA_ID, update_f64_##ISA_ID,                  \
        train_f64_##ISA_ID, evaluate_f64_##ISA_ID, unit_function_f64_##ISA_ID,                   \
        small_net_f64_##ISA_ID, population_lanes_f64_##ISA_ID, population_train_f64_##ISA_ID,    \
    };
#define KERNEL_TABLE_OF(ISA_ID) KERNEL_TABLE(ISA_ID)
KERNEL_TABLE_OF(ISA)
