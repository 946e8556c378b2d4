"""compute_thread: graph calls on one thread of lower priority (CPU), MindSpore's own threads
untouched."""

import multiprocessing
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from whisperms import compute_thread


def nice_of(native_id):
    return os.getpriority(os.PRIO_PROCESS, native_id)


def test_runs_on_one_other_thread_and_returns_or_raises():
    caller = threading.get_ident()
    first = compute_thread.run(threading.get_ident)
    assert first != caller
    assert compute_thread.run(threading.get_ident) == first
    assert compute_thread.run(lambda a, b: a * b, 6, 7) == 42
    # a call made from the graph thread runs there directly (no deadlock on the one thread)
    assert compute_thread.run(compute_thread.run, threading.get_ident) == first

    def fail():
        raise ValueError("from the graph thread")

    with pytest.raises(ValueError, match="from the graph thread"):
        compute_thread.run(fail)
    assert compute_thread.run(lambda: "still serving") == "still serving"


@pytest.mark.skipif(
    not compute_thread.PER_THREAD_PRIORITY, reason="per-thread nice values are Linux's"
)
def test_graph_calls_run_at_lower_priority_and_mindspore_threads_keep_theirs(tiny_en_model):
    main_nice = nice_of(threading.get_native_id())
    tiny_en_model.inference.embed_audio(np.zeros((1, 80, 3000), np.float32))
    graph_thread = compute_thread.run(threading.get_native_id)
    lowered = min(compute_thread.MAX_NICE, main_nice + compute_thread.NICE_INCREMENT)
    assert nice_of(graph_thread) == lowered
    assert nice_of(threading.get_native_id()) == main_nice
    kernel_threads = {}
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/comm") as f:
            name = f.read().strip()
        if name.startswith(compute_thread.KERNEL_THREAD_NAMES):
            kernel_threads[int(task)] = nice_of(int(task))
    assert kernel_threads, "MindSpore's kernel threads were not found by name"
    assert set(kernel_threads.values()) == {main_nice}


def _child(out):
    out.put(compute_thread.run(lambda: os.getpid()))


def test_a_forked_child_gets_its_own_graph_thread():
    compute_thread.run(lambda: None)  # the parent's thread exists
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=_child, args=(out,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert out.get(timeout=5) == child.pid


# Raises the signal's exception at the k-th point where Python would run a signal handler in the
# calling thread (3.11: on entering a Python function and after a call into C; profile events
# 'call' and 'c_return'), for k = 1, 2, ... until a call ends before its k-th point; each time the
# call must raise that exception or return, and the next call return. The signal is real; the
# profile hook only times it.
SIGNAL_AT_EACH_POINT = """
import signal, sys
from whisperms import compute_thread

class Stop(Exception):
    pass

def stop(signum, frame):
    raise Stop

signal.signal(signal.SIGUSR1, stop)
compute_thread.run(int)  # the graph thread exists; its first start is swept below too
for first in (True, False):
    point = 0
    while True:
        point += 1
        seen = 0

        def profile(frame, event, arg):
            global seen
            if event in ("call", "c_return"):
                seen += 1
                if seen == point:
                    signal.raise_signal(signal.SIGUSR1)

        if first:
            compute_thread._calls = None  # as before the first call: the thread is started
        sys.setprofile(profile)
        try:
            outcome = compute_thread.run(lambda: 42)
        except Stop:
            outcome = "stopped"
        except BaseException as error:
            outcome = repr(error)
        finally:
            sys.setprofile(None)
        if outcome not in (42, "stopped"):
            print(point, outcome)
        assert compute_thread.run(lambda: 43) == 43
        if seen < point:
            break
    print(first, point - 1, "points", flush=True)
"""


def test_ctrl_c_at_any_point_of_a_call_raises_its_exception_and_the_next_call_runs():
    """A signal handler's exception (Ctrl-C's KeyboardInterrupt, the CLI's SIGTERM) comes out of
    run() as itself wherever it lands in the caller. Waiting on a concurrent.futures future, one
    landing just after Condition.wait let go of the future's lock came out as "RuntimeError: cannot
    release un-acquired lock" (a CLI traceback, status 1, seen once in CI), and one in the pool's
    submit left a lock held, so the next call waited for ever."""
    proc = subprocess.run(
        [sys.executable, "-c", SIGNAL_AT_EACH_POINT],
        capture_output=True,
        text=True,
        timeout=60,  # the call after one of those points waited for ever
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["True", "False"], proc.stdout
    assert all(int(line.split()[1]) >= 5 for line in lines), proc.stdout
