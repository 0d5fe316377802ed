/* variant.inc.c: one (REAL, ISA): the serial and the OpenMP instantiation of the templates and
 * the entry points that choose between them. */

#define PARNAME s
#define OMP_FOR
#define OMP_FOR_NOWAIT
#define OMP_FOR_COLLAPSE2_NOWAIT
#define OMP_SINGLE
#define OMP_SINGLE_NOWAIT
#define OMP_BARRIER
#define OMP_ATOMIC_WRITE
#define THREAD_INDEX 0
#define THREAD_COUNT 1
#include "kernels.inc.c"
#include "small_nets.inc.c"
#include "recurrent.inc.c"
#include "train.inc.c"
#include "population.inc.c" /* serial only: its threads take whole groups of members */
#undef PARNAME
#undef OMP_FOR
#undef OMP_FOR_NOWAIT
#undef OMP_FOR_COLLAPSE2_NOWAIT
#undef OMP_SINGLE
#undef OMP_SINGLE_NOWAIT
#undef OMP_BARRIER
#undef OMP_ATOMIC_WRITE
#undef THREAD_INDEX
#undef THREAD_COUNT

#define PARNAME p
#define OMP_FOR _Pragma("omp for schedule(static)")
#define OMP_FOR_NOWAIT _Pragma("omp for schedule(static) nowait")
#define OMP_FOR_COLLAPSE2_NOWAIT _Pragma("omp for collapse(2) schedule(static) nowait")
#define OMP_SINGLE _Pragma("omp single")
#define OMP_SINGLE_NOWAIT _Pragma("omp single nowait")
#define OMP_BARRIER _Pragma("omp barrier")
#define OMP_ATOMIC_WRITE _Pragma("omp atomic write")
#ifdef _OPENMP
#define THREAD_INDEX omp_get_thread_num()
#define THREAD_COUNT omp_get_num_threads()
#else
#define THREAD_INDEX 0
#define THREAD_COUNT 1
#endif
#include "kernels.inc.c"
#include "small_nets.inc.c"
#include "recurrent.inc.c"
#include "train.inc.c"
#undef PARNAME
#undef OMP_FOR
#undef OMP_FOR_NOWAIT
#undef OMP_FOR_COLLAPSE2_NOWAIT
#undef OMP_SINGLE
#undef OMP_SINGLE_NOWAIT
#undef OMP_BARRIER
#undef OMP_ATOMIC_WRITE
#undef THREAD_INDEX
#undef THREAD_COUNT

#include "api.inc.c"
