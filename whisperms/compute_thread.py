"""The thread that runs whisperms' graphs on CPU.

MindSpore's CPU runtime runs a small graph's kernels from the calling thread and, while its kernel
threads work on a kernel, keeps that calling thread waiting in a loop of `sched_yield`. When there
are as many kernel threads as cores, the waiting thread is one runnable thread too many: wherever
the scheduler puts it, it takes turns with a thread doing the work. So graph calls are made from
one thread of lower scheduling priority (a higher nice value), which gives way to the work, while
the caller's own threads keep theirs. The priority is lowered once MindSpore's kernel threads exist:
they start during the first graph run and inherit the priority of the thread that starts them.
"""

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from . import core_share, sigint
from .errors import ForkedProcess

# Added to the caller's nice value for the graph-calling thread (nice values stop at 19).
NICE_INCREMENT = 10
MAX_NICE = 19
# How MindSpore names its runtime's threads (Linux thread names)
KERNEL_THREAD_NAMES = ("ActorThread", "KernelThread")
# Linux gives each thread its own nice value; elsewhere the graph thread keeps the caller's.
PER_THREAD_PRIORITY = sys.platform.startswith("linux")

_lock = threading.Lock()
_executor = None
_executor_pid = None
_thread_id = None
_native_id = None  # the graph thread's id in the kernel (Linux: its task id)
_lowered = not PER_THREAD_PRIORITY
_ran_in = None  # the process that ran the first graph: in a process forked from it, none can run


def run(fn, *args):
    """`fn(*args)` on the graph thread, waiting for its result (or its exception); first, now and
    then, the process keeps to the cores other processes leave free (core_share)."""
    if threading.get_ident() == _thread_id:
        return fn(*args)
    core_share.check(compute_thread_ids)
    return _get_executor().submit(_call, fn, args).result()


def run_graph(fn, *args, on_graph_thread=True):
    """A MindSpore graph `fn(*args)`, on the graph thread (run) or, without `on_graph_thread`, on
    the calling one: ForkedProcess in a process forked after its parent ran one (check_not_forked),
    and SIGINT's handler as the caller had it afterwards (a graph run sets MindSpore's: sigint)."""
    check_not_forked()
    with sigint.kept():
        return run(fn, *args) if on_graph_thread else fn(*args)


def check_not_forked():
    """ForkedProcess when this process was forked from one that ran graphs: MindSpore's runtime
    threads are not here, and a graph run waited for ever, even a model loaded here."""
    global _ran_in
    if _ran_in is None:
        _ran_in = os.getpid()
    elif _ran_in != os.getpid():
        raise ForkedProcess(parent_ran_graphs=True)


def _call(fn, args):
    global _thread_id, _native_id, _lowered
    _thread_id, _native_id = threading.get_ident(), threading.get_native_id()
    try:
        return fn(*args)
    finally:
        if not _lowered and kernel_threads_started():
            _lowered = True
            lower_priority()


def _get_executor():
    """The process's executor; a new one in a forked child, where the parent's thread does not
    exist."""
    global _executor, _executor_pid, _thread_id, _lowered
    with _lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = ThreadPoolExecutor(1, thread_name_prefix="whisperms-graphs")
            _executor_pid = os.getpid()
            _thread_id = _native_id = None
            _lowered = not PER_THREAD_PRIORITY
        return _executor


def compute_thread_ids():
    """The kernel's ids of the threads that run graphs: the graph thread and MindSpore's runtime
    threads (Linux: by thread name)."""
    ids = [] if _native_id is None else [_native_id]
    return ids + [int(task) for task, name in _tasks() if name.startswith(KERNEL_THREAD_NAMES)]


def _tasks():
    """(task id, thread name) of each thread of the process (Linux), or none."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return []
    named = []
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                named.append((task, f.read().strip()))
        except OSError:  # a thread that ended meanwhile
            continue
    return named


def kernel_threads_started():
    """Whether MindSpore's runtime has started its kernel threads (Linux: by thread name)."""
    return any(name.startswith(KERNEL_THREAD_NAMES) for _, name in _tasks())


def lower_priority():
    """Raise the calling thread's nice value by NICE_INCREMENT (where it is per thread; elsewhere
    nothing changes). Returns the new nice value, or None."""
    if not PER_THREAD_PRIORITY:
        return None
    tid = threading.get_native_id()
    try:
        nice = min(MAX_NICE, os.getpriority(os.PRIO_PROCESS, tid) + NICE_INCREMENT)
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        return None
    return nice
