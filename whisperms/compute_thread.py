"""The thread that runs whisperms' graphs on CPU.

MindSpore's CPU runtime runs a small graph's kernels from the calling thread and, while its kernel
threads work on a kernel, keeps that calling thread waiting in a loop of `sched_yield`. When there
are as many kernel threads as cores, the waiting thread is one runnable thread too many: wherever
the scheduler puts it, it takes turns with a thread doing the work. So graph calls are made from
one thread of lower scheduling priority (a higher nice value), which gives way to the work, while
the caller's own threads keep theirs. The priority is lowered once MindSpore's kernel threads exist:
they start during the first graph run and inherit the priority of the thread that starts them.

The caller waits for a call's end on a plain lock of its own, which the graph thread releases.
Ctrl-C (or SIGTERM, made an exception by the CLI) is raised in the caller wherever Python checks for
signals. A `concurrent.futures` pool's submit and its future's wait have points where that left a
lock released that a `with` then released again ("RuntimeError: cannot release un-acquired lock" in
place of the KeyboardInterrupt) or held for ever (the next call waited for ever). The caller's side
here holds no lock across such a point.
"""

import _thread
import atexit
import os
import queue
import sys
import threading

from . import core_share, sigint
from .errors import ForkedProcess, memory_error

# Added to the caller's nice value for the graph-calling thread (nice values stop at 19).
NICE_INCREMENT = 10
MAX_NICE = 19
# How MindSpore names its runtime's threads (Linux thread names)
KERNEL_THREAD_NAMES = ("ActorThread", "KernelThread")
# Linux gives each thread its own nice value; elsewhere the graph thread keeps the caller's.
PER_THREAD_PRIORITY = sys.platform.startswith("linux")

_lock = threading.Lock()
_calls = None  # the graph thread's queue of _Call, or None before its first call
_calls_pid = None  # the process that started the graph thread
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
    call = _Call(fn, args)
    _get_calls().put(call)
    return call.wait()


class _Call:
    """fn(*args) for the graph thread: its result or error, and `done`, held until it has ended."""

    __slots__ = ("fn", "args", "result", "error", "done")

    def __init__(self, fn, args):
        self.fn, self.args = fn, args
        self.result = self.error = None
        self.done = threading.Lock()
        self.done.acquire()

    def wait(self):
        """Its result once the graph thread has run it, or its error raised."""
        self.done.acquire()
        error = self.error
        if error is None:
            return self.result
        try:
            raise error
        finally:
            del error, self  # no reference cycle through this frame in the error's traceback


def run_graph(fn, *args, on_graph_thread=True):
    """A MindSpore graph `fn(*args)`, on the graph thread (run) or, without `on_graph_thread`, on
    the calling one: ForkedProcess in a process forked after its parent ran one (check_not_forked),
    RuntimeMemoryError where MindSpore could not allocate its memory, and SIGINT's handler as the
    caller had it afterwards (a graph run sets MindSpore's: sigint)."""
    check_not_forked()
    try:
        with sigint.kept():
            return run(fn, *args) if on_graph_thread else fn(*args)
    except RuntimeError as error:
        memory = memory_error(error)
        if memory is None:
            raise
        raise memory from None  # the caller's one line, as numpy's MemoryError gives it


def check_not_forked():
    """ForkedProcess when this process was forked from one that ran graphs: MindSpore's runtime
    threads are not here, and a graph run waited for ever, even a model loaded here."""
    global _ran_in
    if _ran_in is None:
        _ran_in = os.getpid()
    elif _ran_in != os.getpid():
        raise ForkedProcess(parent_ran_graphs=True)


def _serve(calls):
    """The graph thread: runs each _Call in turn until one without a function."""
    global _lowered
    while (call := calls.get()).fn is not None:
        try:
            call.result = call.fn(*call.args)
        except BaseException as error:  # raised again in the caller
            call.error = error
        finally:
            if not _lowered and kernel_threads_started():
                _lowered = True
                lower_priority()
            call.done.release()
        del call  # its result and arguments are the caller's alone now
    call.done.release()


def _get_calls():
    """The graph thread's queue; a new thread in a forked child, where the parent's does not exist.

    The thread is started with `_thread`, which leaves nothing half done when a signal's exception
    lands during the start (threading.Thread.start waits on a Condition as a future does, and also
    failed so). The globals change only once the thread runs: an exception on the way (Ctrl-C)
    leaves the next call to start one again rather than queue calls no thread serves."""
    global _calls, _calls_pid, _thread_id, _native_id, _lowered
    with _lock:
        if _calls is None or _calls_pid != os.getpid():
            calls = queue.SimpleQueue()
            first = _Call(threading.get_native_id, ())
            calls.put(first)
            _lowered = not PER_THREAD_PRIORITY
            thread_id = _thread.start_new_thread(_serve, (calls,))
            native_id = first.wait()
            atexit.register(_stop, calls)
            _thread_id, _native_id = thread_id, native_id
            _calls, _calls_pid = calls, os.getpid()
        return _calls


def _stop(calls):
    """At exit, in the process that started it: the graph thread ends after the calls it has (a
    graph still running while the interpreter shuts down would meet MindSpore half torn down)."""
    if calls is _calls and _calls_pid == os.getpid():
        last = _Call(None, ())
        calls.put(last)
        last.wait()


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
