"""compute_thread: graph calls on one thread of lower priority (CPU), MindSpore's own threads
untouched."""

import multiprocessing
import os
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
