/* runtime.c: what the compiled core needs from the process around it: fork safety of the OpenMP
 * runtime, a check that threads can be started before OpenMP tries (it exits the process when it
 * cannot), and Ctrl-C seen from code that runs without the GIL.
 *
 * The only process-wide state in the core lives here, and each piece is a fact about the process
 * rather than a setting: whether parallel regions have run, whether it was forked since, how many
 * SIGINTs arrived. Nothing here changes how the kernels compute.
 */
#include "bpfast.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

/* ---- fork ---------------------------------------------------------------------------------- */

static atomic_int parallel_used;
static atomic_int forked_after_parallel;

/* In the child of fork(): libgomp's worker threads were not copied, but its thread pool still
   lists them, so the next parallel region would wait for them forever. */
static void on_fork_child(void)
{
    if (atomic_load(&parallel_used))
        atomic_store(&forked_after_parallel, 1);
}

void bp_runtime_init(void)
{
    static atomic_int registered;
    if (!atomic_exchange(&registered, 1))
        pthread_atfork(NULL, NULL, on_fork_child);
}

int bp_parallel_threads(int requested)
{
    if (requested <= 1 || atomic_load(&forked_after_parallel))
        return 1;
    atomic_store(&parallel_used, 1); /* before the region starts: a fork may come during it */
    return requested;
}

int bp_forked_after_parallel(void) { return atomic_load(&forked_after_parallel); }

/* ---- can threads be started? --------------------------------------------------------------- */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t go;
    int released;
} thread_gate;

static void *wait_at_gate(void *arg)
{
    thread_gate *gate = arg;
    pthread_mutex_lock(&gate->lock);
    while (!gate->released)
        pthread_cond_wait(&gate->go, &gate->lock);
    pthread_mutex_unlock(&gate->lock);
    return NULL;
}

/* Start wanted - 1 threads that all stay alive until the last is created (so they exist at once,
   as a parallel region's would), then release and join them. */
int bp_try_threads(int wanted)
{
    enum { MAX_TRIED = 1024 };
    pthread_t threads[MAX_TRIED];
    thread_gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    int started = 0;
    if (wanted > MAX_TRIED)
        wanted = MAX_TRIED;
    while (started < wanted - 1 &&
           pthread_create(&threads[started], NULL, wait_at_gate, &gate) == 0)
        started++;
    pthread_mutex_lock(&gate.lock);
    gate.released = 1;
    pthread_cond_broadcast(&gate.go);
    pthread_mutex_unlock(&gate.lock);
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    return started + 1;
}

/* ---- Ctrl-C -------------------------------------------------------------------------------- */

static atomic_uint_fast64_t interrupts;
static struct sigaction replaced;
static int install_depth; /* changed only by the main thread, with the GIL held */

static void on_sigint(int signum, siginfo_t *info, void *context)
{
    atomic_fetch_add(&interrupts, 1); /* lock-free atomics are async-signal-safe */
    if (replaced.sa_flags & SA_SIGINFO)
        replaced.sa_sigaction(signum, info, context);
    else if (replaced.sa_handler != SIG_DFL && replaced.sa_handler != SIG_IGN)
        replaced.sa_handler(signum);
}

/* on_sigint in place of the handler `current` (which it then chains to); 0 if `current` is
   SIG_DFL or SIG_IGN (nothing to chain to: left as it is) or sigaction fails. */
static int install_over(const struct sigaction *current)
{
    if (!(current->sa_flags & SA_SIGINFO) &&
        (current->sa_handler == SIG_DFL || current->sa_handler == SIG_IGN))
        return 0;
    struct sigaction ours;
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = on_sigint;
    ours.sa_flags = SA_SIGINFO | (current->sa_flags & (SA_ONSTACK | SA_RESTART));
    ours.sa_mask = current->sa_mask;
    replaced = *current;
    return sigaction(SIGINT, &ours, NULL) == 0;
}

int bp_interrupt_install(void)
{
    if (install_depth > 0) {
        install_depth++;
        return 1;
    }
    struct sigaction current;
    if (sigaction(SIGINT, NULL, &current) != 0 || !install_over(&current))
        return 0;
    install_depth = 1;
    return 1;
}

void bp_interrupt_uninstall(void)
{
    if (install_depth == 0 || --install_depth > 0)
        return;
    struct sigaction current;
    /* Put back what we replaced, unless someone (signal.signal in a callback) replaced us. */
    if (sigaction(SIGINT, NULL, &current) == 0 && (current.sa_flags & SA_SIGINFO) &&
        current.sa_sigaction == on_sigint)
        sigaction(SIGINT, &replaced, NULL);
}

/* While installed: if Python code run meanwhile (a callback that saves: io's Ctrl-C guard sets
   a handler and puts the previous one back with signal.signal) replaced ours with another
   handler, take that one as the one we pass SIGINT on to and put ours back, so that compiled
   loops see Ctrl-C again. SIG_DFL and SIG_IGN set there are the caller's choice and stay. */
void bp_interrupt_rearm(void)
{
    struct sigaction current;
    if (install_depth == 0 || sigaction(SIGINT, NULL, &current) != 0)
        return;
    if (!((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_sigint))
        install_over(&current);
}

uint64_t bp_interrupt_count(void) { return atomic_load(&interrupts); }

double bp_monotonic_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

int bp_stop_requested(const bp_stop *stop)
{
    if (!stop)
        return 0;
    if (stop->interruptible && atomic_load_explicit(&interrupts, memory_order_relaxed) !=
                                   stop->interrupts_seen)
        return 1;
    return stop->deadline > 0 && bp_monotonic_seconds() > stop->deadline;
}
