/* bpfast.c: picks the best instruction set the CPU supports at run time among the variants
 * compiled in kernels_<isa>.c (each its own translation unit, built in parallel), and reports
 * build facts. The build flags stay portable (no -march=native): each variant enables its own
 * instruction set with a target pragma. */
#include "internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static int cpu_has(const char *isa)
{
    if (strcmp(isa, "baseline") == 0)
        return 1;
#if BP_X86
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

/* Best first. */
static const bp_kernels *const all_kernels[] = {
#if BP_X86
    &bp_kernels_avx512, &bp_kernels_avx2,
#endif
    &bp_kernels_baseline,
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

int bp_openmp_bound_procs(void)
{
#ifdef _OPENMP
    return omp_get_proc_bind() == omp_proc_bind_false ? 0 : omp_get_num_procs();
#else
    return 0;
#endif
}

#define BP_NAME_ITEM(id, name) #name,
static const char *const activation_names[] = {BP_ACTIVATIONS(BP_NAME_ITEM)};
static const char *const loss_names[] = {BP_LOSSES(BP_NAME_ITEM)};
#undef BP_NAME_ITEM

const char *bp_activation_name(int i)
{
    return i >= 0 && i < BP_N_ACTIVATIONS ? activation_names[i] : NULL;
}

const char *bp_loss_name(int i) { return i >= 0 && i < BP_N_LOSSES ? loss_names[i] : NULL; }
