"""Keeping to the CPU cores other processes leave free (Linux).

MindSpore's CPU runtime splits every kernel into equal shares, one per kernel thread, and waits for
the last share. When another process keeps one of our cores busy, the kernel thread that shares its
core with it finishes its share late, and every kernel waits for it: the whole transcription slows
down by about the other process's share of that core, on every kernel. On fewer cores, all ours,
the shares run one after another at full speed instead.

So while graphs run (compute_thread calls `check` before each graph call), every CHECK_INTERVAL
seconds the CPU time spent on our cores by other processes is measured (each core's busy time in
/proc/stat less the time this process's threads spent on it), and the threads that run graphs
(MindSpore's and whisperms' graph thread; not the caller's, so processes it starts keep every
core) are kept on as many of the cores as are left free (`cores_to_use`). Results do not change:
MindSpore's thread count stays as loaded; only where its threads may run does. A thread count
below the process's cores (`load_model(threads=N)`, `--threads N`: exactly those cores) turns this
off, as does WHISPERMS_ADAPT_CORES=0. A graph's compile starts a new measurement (`restart`):
while MindSpore compiles, its kernel build server is a process busy on our cores.

A CPU quota on the process's cgroup (a container's `--cpus`, a Kubernetes CPU limit) caps the cores
used the same way (`cpu_limit`): a quota of one core over two cores' threads is spent by both
threads in bursts, every kernel split across them, and throttled together; on one core the shares
run back to back.
"""

import os
import random
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

# Seconds between two measurements: long enough to average over many kernels, short enough to
# follow a process that starts or stops during one file.
CHECK_INTERVAL = 1.0
# Another process's use of our cores, in cores, from which one core is left to it: half a core
# busy elsewhere already costs the kernels that wait on the shared core about as much as one
# core fewer costs.
YIELD_AT = 0.5
# The /proc/stat columns that count a core as busy: user, nice, system, irq, softirq (not idle,
# iowait, or steal and guest time, which is the hypervisor's).
BUSY_COLUMNS = (0, 1, 2, 5, 6)
ENV_SWITCH = "WHISPERMS_ADAPT_CORES"
# Where cgroup file systems are mounted: the unified (v2) hierarchy, at the root or beside v1 ones
# (hybrid), and v1's cpu controller.
CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_V2_MOUNTS = ("", "unified")
CGROUP_V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct")
AVAILABLE = hasattr(os, "sched_getaffinity") and os.path.exists("/proc/stat")

_lock = threading.Lock()
_state = None  # _Sharing of this process (pid-checked: a forked child starts over)
# The cores the process had when whisperms was imported: a child forked while its parent had given
# cores up starts from these, not from the parent's momentary set.
GIVEN = tuple(sorted(os.sched_getaffinity(0))) if AVAILABLE else ()
_disabled = os.environ.get(ENV_SWITCH, "1").strip() in ("0", "false", "no", "off")


def cores_to_use(cores: int, others: float) -> int:
    """How many of our `cores` to run on while other processes use `others` cores' worth of them:
    one fewer for every YIELD_AT + whole core they use, never fewer than one."""
    if others < YIELD_AT:
        return cores
    return max(1, min(cores, cores - int(others - YIELD_AT) - 1))


def cpu_limit(root: str = CGROUP_ROOT, cgroups: Optional[str] = None) -> Optional[float]:
    """The CPU time the process's cgroup and its ancestors allow, in cores (quota over period, the
    smallest along the path), or None when none is set or none can be read. `cgroups`: the text of
    /proc/self/cgroup (read when None); `root`: where the cgroup file systems are mounted."""
    if cgroups is None:
        try:
            with open("/proc/self/cgroup", encoding="ascii", errors="replace") as f:
                cgroups = f.read()
        except OSError:
            return None
    limits = []
    for line in cgroups.splitlines():
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", None, "")
        if controllers == "":
            mounts = [os.path.join(root, m) for m in CGROUP_V2_MOUNTS]
            mounts = [m for m in mounts if os.path.exists(os.path.join(m, "cgroup.controllers"))]
            limits += [_v2_limit(os.path.join(m, p)) for m in mounts[:1] for p in _ancestors(path)]
        elif controllers is not None and "cpu" in controllers.split(","):
            for mount in CGROUP_V1_CPU_MOUNTS:
                folder = os.path.join(root, mount)
                if os.path.isdir(folder):
                    limits += [_v1_limit(os.path.join(folder, p)) for p in _ancestors(path)]
                    break
    limits = [limit for limit in limits if limit is not None]
    return min(limits) if limits else None


def _ancestors(path: str) -> List[str]:
    """A cgroup's path and its ancestors' (relative, for os.path.join), itself first."""
    parts = [p for p in path.strip().split("/") if p]
    return ["/".join(parts[:n]) for n in range(len(parts), -1, -1)]


def _read_words(path: str) -> Optional[List[str]]:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().split()
    except (OSError, UnicodeDecodeError):
        return None


def _quota_cores(quota: Optional[str], period: Optional[str]) -> Optional[float]:
    """A quota and its period as written in the cgroup files, in cores; None for none ("max",
    -1) or anything else that is not two positive integers."""
    try:
        quota, period = int(quota), int(period)
    except (TypeError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v2_limit(folder: str) -> Optional[float]:
    """cpu.max: "max 100000" (none) or "<quota> <period>" in microseconds."""
    words = _read_words(os.path.join(folder, "cpu.max"))
    return _quota_cores(*words) if words and len(words) == 2 else None


def _v1_limit(folder: str) -> Optional[float]:
    """cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us."""
    quota = _read_words(os.path.join(folder, "cpu.cfs_quota_us"))
    period = _read_words(os.path.join(folder, "cpu.cfs_period_us"))
    return _quota_cores(quota[0] if quota else None, period[0] if period else None)


def cores_allowed(cores: int, limit: Optional[float]) -> int:
    """Of `cores`, how many a CPU quota of `limit` cores (None: none) leaves worth running on: its
    whole cores, at least one."""
    if limit is None:
        return cores
    return max(1, min(cores, int(limit)))


def busy_seconds(cores: List[int], stat_text: str) -> Dict[int, float]:
    """CPU seconds each of `cores` has been busy since boot, by /proc/stat's text."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {f"cpu{c}": c for c in cores}
    busy = dict.fromkeys(cores, 0.0)
    for line in stat_text.splitlines():
        name, _, rest = line.partition(" ")
        if name in names:
            values = rest.split()
            ticks = sum(int(values[i]) for i in BUSY_COLUMNS if i < len(values))
            busy[names[name]] = ticks / tick
    return busy


def thread_seconds() -> Dict[int, Tuple[float, int]]:
    """Each thread of this process: (CPU seconds used, the core it last ran on), from
    /proc/self/task/*/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    threads = {}
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/stat", encoding="ascii", errors="replace") as f:
                text = f.read()
        except OSError:  # a thread that ended meanwhile
            continue
        # fields after the name (which may hold spaces): state is field 3, utime 14, stime 15,
        # processor 39
        fields = text[text.rindex(")") + 2 :].split()
        threads[int(task)] = ((int(fields[11]) + int(fields[12])) / tick, int(fields[36]))
    return threads


def sample(cores: List[int]):
    """(wall clock, each core's busy seconds, each of this process's threads' CPU seconds and
    core, the process's CPU seconds) now."""
    with open("/proc/stat", encoding="ascii") as f:
        text = f.read()
    times = os.times()  # the whole process's, threads that have ended included
    return time.monotonic(), busy_seconds(cores, text), thread_seconds(), times.user + times.system


def others_by_core(before, after) -> Dict[int, float]:
    """Each core's use by other processes between two samples, in cores (0 to 1): its busy time
    less the CPU time this process's threads used on it (each thread's time counted on the core it
    ran on last; threads that stay on one core, as the graph threads do here, are counted
    exactly)."""
    wall = after[0] - before[0]
    if wall <= 0:
        return dict.fromkeys(after[1], 0.0)
    own = dict.fromkeys(after[1], 0.0)
    for thread, (seconds, core) in after[2].items():
        if core in own:
            own[core] += seconds - before[2].get(thread, (0.0, core))[0]
    return {c: min(1.0, max(0.0, after[1][c] - before[1][c] - own[c]) / wall) for c in after[1]}


class _Sharing:
    def __init__(self, threads):
        self.threads = threads  # () -> the ids of the threads to move
        self.pid = os.getpid()
        given = list(GIVEN)
        # preferred order when loads tie: rotated by the pid, so that processes which give up
        # cores at the same moment (two whisperms on one machine) tend to keep different ones
        turn = self.pid % len(given)
        self.cores = given[turn:] + given[:turn]
        self.using = sorted(self.cores)
        # a CPU quota's cores, from the start: it does not come and go as other processes do
        self.allowed = cores_allowed(len(given), cpu_limit())
        self.pinned = set()  # the threads kept on self.using while it is not every core
        if self.allowed < len(given):
            self._move(sorted(self.cores[: self.allowed]))
        self.last = sample(self.cores)
        self.others = 0.0
        self.random = random.Random(self.pid)

    def update(self):
        now = sample(self.cores)
        load = others_by_core(self.last, now)
        # in total, exactly: the cores' busy time less the process's (a thread's time is put on
        # the core it ran on last, which for threads that move between cores only ranks them)
        wall = now[0] - self.last[0]
        busy = sum(now[1][c] - self.last[1][c] for c in self.cores)
        self.others = max(0.0, busy - (now[3] - self.last[3])) / wall if wall > 0 else 0.0
        self.last = now
        wanted = min(cores_to_use(len(self.cores), self.others), self.allowed)
        if wanted == len(self.cores):
            target = sorted(self.cores)
        elif len(self.using) == wanted and all(load[c] < YIELD_AT for c in self.using):
            # the cores kept are free enough; graph threads started since then join them
            started = set(self.threads()) - self.pinned
            if started:
                pin_threads(self.using, sorted(started))
                self.pinned |= started
            return
        else:
            # a stable sort: ties keep the preferred order of self.cores
            target = sorted(sorted(self.cores, key=load.__getitem__)[:wanted])
            # Moving from some cores to others only every other time: two processes that would
            # swap onto the same free core at once do not keep doing so.
            if len(self.using) < len(self.cores) and self.random.random() < 0.5:
                return
        if target != self.using:
            self._move(target)

    def _move(self, cores):
        threads = self.threads()
        pin_threads(cores, threads)
        self.using = cores
        self.pinned = set(threads) if len(cores) < len(self.cores) else set()


def pin_threads(cores: List[int], threads: Optional[List[int]] = None) -> None:
    """Let the `threads` (kernel task ids; None: every thread of the process) run on `cores` only.
    Threads started later inherit it from their creator, and so do processes."""
    tasks = os.listdir("/proc/self/task") if threads is None else threads
    for task in tasks:
        try:
            os.sched_setaffinity(int(task), cores)
        except OSError:  # a thread that ended meanwhile
            pass


def disable() -> None:
    """No adapting in this process from now on (an explicit thread count was asked for); cores
    already given up are not taken back here: the caller sets its own."""
    global _disabled
    _disabled = True


def check(threads: Callable[[], List[int]]) -> None:
    """Measure and adapt when CHECK_INTERVAL has passed since the last measurement; cheap
    otherwise. `threads()` gives the kernel ids of the threads that run the graphs: only they are
    moved, so that the caller's threads, and processes they start, keep every core."""
    global _state
    if _disabled or not AVAILABLE:
        return
    state = _state
    if state is not None and state.pid == os.getpid():
        if time.monotonic() - state.last[0] < CHECK_INTERVAL:
            return
    with _lock:
        # Files of /proc or /sys that cannot be read or parsed as expected (a kernel, container
        # or sandbox unlike those tested) only cost the adapting: never the transcription.
        try:
            if _state is None or _state.pid != os.getpid():
                _state = _Sharing(threads)
            else:
                _state.update()
        except (OSError, ValueError, IndexError, KeyError):
            disable()


def restart() -> None:
    """Start the next measurement now: other processes' use of our cores since the last one is left
    out. For after a graph's compile (inference._Graph): it keeps MindSpore's kernel build server,
    a process, busy on our cores while this process waits for it, and that would otherwise give up
    a core for the graphs that run next, until the measurement after."""
    state = _state
    if _disabled or not AVAILABLE or state is None or state.pid != os.getpid():
        return
    with _lock:
        try:
            state.last = sample(state.cores)
        except (OSError, ValueError, IndexError, KeyError):
            disable()


def status() -> Optional[Tuple[List[int], List[int], float]]:
    """(cores in use, cores given, other processes' use of them at the last measurement, in
    cores), or None before the first measurement or when not adapting."""
    state = _state
    if _disabled or state is None or state.pid != os.getpid():
        return None
    return state.using, sorted(state.cores), state.others
