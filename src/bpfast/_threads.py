"""How many threads a call uses: the default, what the system can start, and a chooser that keeps
a run on one thread whenever threads do not pay (a busy machine, small work).

Results never depend on the thread count (the kernels give every output element to one thread
with a fixed order of operations), so all of this is about speed and about never hanging or
crashing; switching between one thread and several in the middle of a run is free.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import warnings

from . import _core
from ._validation import check_int

# Thread counts beyond this are certainly a mistake (and would make OpenMP allocate stacks for
# each); machines with more cores than this are not a target.
MAX_THREADS = 1024

# Below this many multiply-adds per batch, the work between two barriers is too short to repay
# them: it runs on one thread. Measured on 2-core AMD EPYC (AVX2 and AVX-512) machines: a
# 64-32-10 net on batches of 32 (0.23M multiply-adds) gained 1.19x from a second thread on an idle
# machine, a 784-256-10 net on batches of 64 (39M) 1.8x; the bound sits between them, and the
# ThreadChooser catches what it lets through on a machine where threads do not pay.
MIN_PARALLEL_WORK = 4_000_000


@functools.cache  # read once: a quota is set when a container starts
def _cpu_quota(root: str = "/sys/fs/cgroup") -> int | None:
    """CPUs granted by a cgroup CPU quota (containers started with --cpus), rounded up; None if
    there is no quota. cgroup v2 (cpu.max) and v1 (cpu.cfs_quota_us / cpu.cfs_period_us)."""
    candidates = [(os.path.join(root, "cpu.max"), None),
                  (os.path.join(root, "cpu", "cpu.cfs_quota_us"),
                   os.path.join(root, "cpu", "cpu.cfs_period_us")),
                  (os.path.join(root, "cpu,cpuacct", "cpu.cfs_quota_us"),
                   os.path.join(root, "cpu,cpuacct", "cpu.cfs_period_us"))]
    for quota_path, period_path in candidates:
        try:
            with open(quota_path) as f:
                fields = f.read().split()
            if period_path is None:
                quota, period = fields[0], fields[1]
            else:
                with open(period_path) as f:
                    quota, period = fields[0], f.read().split()[0]
        except (OSError, IndexError):
            continue
        if quota in ("max", "-1"):
            return None
        try:
            return max(1, math.ceil(int(quota) / int(period)))
        except (ValueError, ZeroDivisionError):
            return None
    return None


def default_threads() -> int:
    """Every core this process may use, as the OpenMP runtime counts them: OMP_NUM_THREADS and
    the limits `threadpoolctl.threadpool_limits` sets (through omp_set_num_threads, as for
    scikit-learn) apply; so do the CPU affinity mask and a cgroup CPU quota. One in a process
    forked after bpfast had run threads (see bp_parallel_threads)."""
    if _core.forked_after_parallel():
        return 1
    n = _core.openmp_max_threads()
    bound = _core.openmp_bound_procs()
    if bound:  # OMP_PROC_BIND / OMP_PLACES: the runtime pinned this thread, so its mask says 1
        n = min(n, bound)
    else:
        try:
            n = min(n, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            n = min(n, os.cpu_count() or 1)
    quota = _cpu_quota()
    if quota is not None:
        n = min(n, quota)
    return max(1, min(n, MAX_THREADS))


_OPENMP = bool(_core.build_facts()["openmp"])


def requested_threads(n_threads) -> int:
    """The n_threads argument of the public API: None for the default, else a checked int (a
    build without OpenMP runs one thread whatever is asked, and says so)."""
    if n_threads is None:
        return default_threads()
    n = check_int("n_threads", n_threads, low=1, high=MAX_THREADS)
    if n > 1 and not _OPENMP:
        warnings.warn(f"n_threads={n}: this bpfast was built without OpenMP and runs on one "
                      f"thread; rebuild it with a compiler that has OpenMP (bpfast.build_info())",
                      RuntimeWarning, stacklevel=3)
    return n


_started = threading.local()  # per Python thread: OpenMP keeps one thread pool per caller


def usable_threads(wanted: int, explicit: bool) -> int:
    """`wanted` if the system can start that many threads, checked once per calling thread and
    size before OpenMP tries (OpenMP ends the process when it cannot create a thread). If it
    cannot: an explicit request raises RuntimeError; the default quietly uses fewer."""
    if wanted <= 1 or _core.forked_after_parallel():
        return 1
    if getattr(_started, "count", 1) >= wanted:
        return wanted
    got = _core.try_threads(wanted)
    if got < wanted:
        if explicit:
            raise RuntimeError(f"n_threads={wanted}: the system could start only {got} threads "
                               f"for this process (a limit on processes or memory?); use "
                               f"n_threads={got} or fewer")
        wanted = got
    _started.count = max(getattr(_started, "count", 1), wanted)
    return wanted


def threads_for(n_threads, work_per_batch: int) -> int:
    """Threads worth using for batches of `work_per_batch` multiply-adds: one for small work,
    else the request (or default) if the system can start them."""
    explicit = n_threads is not None
    n = requested_threads(n_threads)
    if n <= 1 or work_per_batch < MIN_PARALLEL_WORK:
        return 1
    return usable_threads(n, explicit)


def other_runnable_tasks(proc: str = "/proc") -> int | None:
    """Threads of other processes running or waiting for a CPU at this moment: the kernel's count
    of runnable tasks (Linux, /proc/loadavg) less this process's own running threads (OpenMP
    workers spin for a while after a parallel region). None where the system does not say."""
    try:
        with open(os.path.join(proc, "loadavg")) as f:
            runnable = int(f.read().split()[3].split("/")[0])
        own = 0
        tasks = os.path.join(proc, "self", "task")
        for task in os.listdir(tasks):
            try:
                with open(os.path.join(tasks, task, "stat")) as f:
                    own += f.read().rpartition(")")[2].split()[0] == "R"
            except (OSError, IndexError):
                continue  # the thread ended while we looked
    except (OSError, ValueError, IndexError):
        return None
    return max(runnable - own, 0)


class ThreadChooser:
    """Chooses, chunk by chunk of a long call, between `n` threads and one, from measured speed.

    A unit of work is a sweep, or a batch where the call cuts its sweeps into chunks of batches
    (mini-batch runs of long sweeps: _core.MIN_BATCHES_TO_CUT), so that a fit of a few long
    sweeps tries threads too. Threads that wait at barriers for a core that another process
    holds can make a run hundreds of times slower than one thread, and no static rule sees that
    coming. So one thread runs first; then a chunk on `n` threads is tried with a deadline at
    1.1x the time one thread took for as much work (the compiled loop gives up at the deadline:
    a chunk of batches pauses between two, losing nothing; a chunk of sweeps puts back the start
    of the sweep it was in); threads are taken when they take at most 0.95 of one thread's time
    and kept while they are no slower, and every chunk on threads keeps a deadline, so a machine
    that becomes busy costs at most one chunk's time. A trial that was faster, but by less, is
    tried again after ten times its own time (it cost nothing). Both measured on batches of 200
    of a 100-100-10 net, where two threads run 1.2-1.3x faster than one: kept only while 10%
    faster, threads were given up after a chunk measured 1.10x. And a first trial carries its own
    set-up: on Zen 5 first trials measured 0.88-0.95 of one thread's time where the chunks after
    them, on the same threads, took 0.77-0.80 (session 24); with the bar at 0.9 the synthetic
    task's SGD fit (10 epochs) kept one thread in most fits (median 0.486 s against 0.362 s with
    the bar at 0.95, 6 interleaved fits each).
    A trial is made only when the work left is at least TRIAL_SHARE times the trial's, so that a
    failed one costs at most a few percent of the run. A failed trial (or threads given up) is
    tried again after RETRY_FACTOR times its own time, the factor doubling with each failure in a
    row (at most MAX_RETRY seconds): a trial loses at most its own time, so failures cost at most
    1/11 of the run, less the longer they go on. The back-off is in the trial's own time, not in
    seconds, because what makes threads lose on an idle machine can pass within a second: the
    two vCPUs of session 25's Zen 5 VM passed a cache line to and fro in 95 ns for a while, then
    in 450 ns for the next (the host had moved them apart), back and forth every 0.3-2 s, and in
    the far phases every barrier and every shared row costs 4-5 times as much: batches of 200 of
    the synthetic task's net took 165 us on two threads against 92 on one, 70 on two in a near
    phase. With a retry after 1 s, as before, one trial in a far phase kept a 0.5 s fit on one
    thread to its end. One thread is re-measured every 10 s while threads win.

    The deadline is checked between batches (a stop inside one only skips work: the threads still
    meet at every barrier of the batch), and with every core busy each barrier can wait a whole
    scheduler time slice for a descheduled thread: a trial of a 4 ms sweep was measured to take
    150-190 ms on a 2-core machine running two busy processes. So no trial is made while the
    machine has no idle core for the extra threads (other processes' runnable threads plus `n`
    exceed the CPUs); that is asked again after LOAD_RECHECK seconds.
    """

    DEADLINE_MARGIN = 1.1   # a threaded chunk may take this much of one thread's time ...
    SLACK_SECONDS = 0.002   # ... plus this, for timer noise and the fork/join of the team
    TAKE_SPEEDUP = 0.95     # a trial wins if its threads take at most this much of it ...
    KEEP_SPEEDUP = 1.0      # ... and they stay while they take at most this much
    TRIAL_SHARE = 25        # a trial needs this many times its own work still to do
    RETRY_FACTOR = 10       # a failed trial is retried after this many times its own time ...
    MAX_RETRY = 60.0        # ... doubling with each failure in a row, up to this many seconds
    LOAD_RECHECK = 1.0      # seconds before the load is read again when no core was idle
    REMEASURE = 10.0        # seconds between measures of one thread while threads win

    def __init__(self, n: int, others_runnable=other_runnable_tasks, cpus: int | None = None):
        self.n = n
        self.others_runnable = others_runnable  # () -> int or None (unknown: trials are made)
        self.cpus = cpus or os.cpu_count() or 1
        self.serial: float | None = None  # seconds per unit of work on one thread
        self.use_threads = False
        self.retry_factor = self.RETRY_FACTOR
        self.next_trial = 0.0
        self.next_serial = 0.0

    def _trial_allowed(self, units: float, units_left: float, now: float) -> bool:
        """Whether a chunk of `units` may be tried on threads now: one thread has been measured,
        no failed trial is backing off, and the work left is TRIAL_SHARE times the chunk's."""
        return (self.n > 1 and self.serial is not None and now >= self.next_trial
                and units_left >= self.TRIAL_SHARE * units)

    def chunk_size(self, units: int, units_left: float, now: float) -> int:
        """The units of the next chunk: `units`, or the most a trial may risk when one is due
        that a chunk this big may not (chunks grow as they get faster)."""
        if (not self.use_threads and units > 1 and not self._trial_allowed(units, units_left, now)
                and self._trial_allowed(1, units_left, now)):
            return max(1, min(units - 1, int(units_left // self.TRIAL_SHARE)))
        return units

    def plan(self, units: float, units_left: float, now: float) -> tuple[int, float]:
        """(threads, deadline) for the next chunk of `units` of work, `units_left` of the call's
        work (this chunk's included) still to do; deadline 0 means none."""
        if self.n <= 1 or self.serial is None:
            return 1, 0.0
        if self.use_threads and now >= self.next_serial:
            return 1, 0.0
        if not self.use_threads:
            if not self._trial_allowed(units, units_left, now):
                return 1, 0.0
            others = self.others_runnable()
            if others is not None and others + self.n > self.cpus:
                self.next_trial = now + self.LOAD_RECHECK  # no idle core: ask again later
                return 1, 0.0
        return self.n, now + self.serial * units * self.DEADLINE_MARGIN + self.SLACK_SECONDS

    def record(self, threads: int, units: float, seconds: float, cut_short: bool,
               now: float) -> None:
        """What a chunk did: `units` of work finished in `seconds`; `cut_short` if its deadline
        stopped it."""
        if threads <= 1:
            if units > 0:
                self.serial = seconds / units
            self.next_serial = now + self.REMEASURE
            return
        rate = math.inf if cut_short or units <= 0 else seconds / units
        bound = self.KEEP_SPEEDUP if self.use_threads else self.TAKE_SPEEDUP
        if self.serial is not None and rate <= self.serial * bound:
            self.use_threads = True
            self.retry_factor = self.RETRY_FACTOR
        elif not self.use_threads and self.serial is not None and rate <= self.serial:
            # a trial that won too little cost nothing: another as soon as after a first failure
            self.next_trial = now + min(self.RETRY_FACTOR * seconds, self.MAX_RETRY)
        else:
            self.use_threads = False
            self.next_trial = now + min(self.retry_factor * seconds, self.MAX_RETRY)
            self.retry_factor = min(2 * self.retry_factor, 1 << 20)
