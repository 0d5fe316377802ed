/* instantiate.inc.c: every (ISA, PAR) variant of the kernels for the precision bpfast.c selected
 * (PRECISION_FLOAT or PRECISION_DOUBLE), plus the precision's workspace functions. */

#if PRECISION_FLOAT
#define REAL float
#define SFX f32
#define VREAL vf32
#define VINT vi32
#define ITYPE int32_t
#define VW 16
#define BP_DOUBLE 0
#define TANH tanhf
#else
#define REAL double
#define SFX f64
#define VREAL vf64
#define VINT vi64
#define ITYPE int64_t
#define VW 8
#define BP_DOUBLE 1
#define TANH tanh
#endif

#include "workspace.inc.c"

#define ISA baseline
#include "variant.inc.c"
#undef ISA

#if BP_X86_VARIANTS
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define ISA avx2
#include "variant.inc.c"
#undef ISA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")
#endif
#define ISA avx512
#include "variant.inc.c"
#undef ISA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

#undef REAL
#undef SFX
#undef VREAL
#undef VINT
#undef ITYPE
#undef VW
#undef BP_DOUBLE
#undef TANH
