"""core_share: the process keeps to the CPU cores other processes leave free, measured from
/proc/stat, with real busy processes; transcripts do not change."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from mindspore import Tensor
from user_env import user_env

from whisperms import core_share
from whisperms.inference import _Graph

from conftest import DATA

pytestmark = pytest.mark.skipif(not core_share.AVAILABLE, reason="Linux /proc and CPU affinity")

SPIN = [sys.executable, "-c", "while True: pass"]


@pytest.mark.parametrize(
    "cores, others, expected",
    [
        (2, 0.0, 2),
        (2, 0.45, 2),
        (2, 0.5, 1),
        (2, 1.0, 1),
        (2, 2.0, 1),
        (1, 1.0, 1),
        (4, 0.2, 4),
        (4, 1.0, 3),
        (4, 1.6, 2),
        (4, 3.9, 1),
    ],
)
def test_cores_to_use(cores, others, expected):
    assert core_share.cores_to_use(cores, others) == expected


def test_busy_seconds_reads_each_core_of_proc_stat():
    text = (
        "cpu  10 0 10 500 0 0 0 0 0 0\n"
        "cpu0 100 5 20 1000 7 3 2 50 0 0\n"
        "cpu1 1 0 1 2000 0 0 0 0 0 0\n"
        "intr 12345\n"
    )
    tick = os.sysconf("SC_CLK_TCK")
    # user, nice, system, irq, softirq: idle, iowait and steal are not busy
    assert core_share.busy_seconds([0, 1], text) == {0: 130 / tick, 1: 2 / tick}
    assert core_share.busy_seconds([1], text) == {1: 2 / tick}


def test_others_by_core_takes_off_each_thread_time_on_its_core():
    # threads: id -> (CPU seconds, last core)
    before = (10.0, {0: 5.0, 1: 7.0}, {1: (1.0, 0), 2: (2.0, 1)})
    # over 2 s: core 0 busy 2 s, core 1 busy 1 s; thread 1 used 2 s on core 0, thread 2 0.5 s on
    # core 1, and a new thread 3 0.25 s on core 1
    after = (12.0, {0: 7.0, 1: 8.0}, {1: (3.0, 0), 2: (2.5, 1), 3: (0.25, 1)})
    assert core_share.others_by_core(before, after) == {0: 0.0, 1: 0.125}
    assert core_share.others_by_core(before, before) == {0: 0.0, 1: 0.0}


def test_thread_seconds_lists_this_process_threads():
    threads = core_share.thread_seconds()
    assert os.getpid() in threads  # the main thread's id is the process's
    cores = set(os.sched_getaffinity(0))
    assert all(seconds >= 0 and core in cores for seconds, core in threads.values())


def test_a_spinning_process_is_measured_as_one_core():
    cores = sorted(os.sched_getaffinity(0))
    spinner = subprocess.Popen(SPIN)
    try:
        time.sleep(0.3)  # started
        before = core_share.sample(cores)
        time.sleep(1.5)
        after = core_share.sample(cores)
    finally:
        spinner.kill()
        spinner.wait()
    assert 0.7 <= sum(core_share.others_by_core(before, after).values()) <= 1.3
    time.sleep(0.3)
    before = core_share.sample(cores)
    time.sleep(1.0)
    after = core_share.sample(cores)
    assert sum(core_share.others_by_core(before, after).values()) < 0.4


# A process of a user's: transcribes the clip idle, beside a spinning process, and idle again, and
# reports the text and the cores it ran on after each.
SCRIPT = """
import json, os, subprocess, sys, time
from whisperms import core_share, load_model
model = load_model(sys.argv[1])
def phase(seconds):
    # transcriptions for at least `seconds` (several of core_share's measurements)
    texts, start = [], time.monotonic()
    while not texts or time.monotonic() - start < seconds:
        texts.append(model.transcribe(sys.argv[2], language="en", temperature=0.0).text)
    return texts, core_share.status()
phase(0)  # graphs compiled or loaded: compilation's helper processes and threads are not ours
out = {"idle": phase(2 * core_share.CHECK_INTERVAL)}
spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
try:
    out["busy"] = phase(4 * core_share.CHECK_INTERVAL)
    # the caller's thread, and a process it starts, keep every core
    child = "import os; print(sorted(os.sched_getaffinity(0)))"
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    out["busy_child"] = done.stdout
    out["busy_main"] = sorted(os.sched_getaffinity(0))
finally:
    spinner.kill()
    spinner.wait()
out["after"] = phase(4 * core_share.CHECK_INTERVAL)
print(json.dumps(out))
"""


def _run_script(tiny_en_ct2_dir, env=None):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_en_ct2_dir), str(DATA / "jfk_inaugural_1961.flac")],
        capture_output=True,
        text=True,
        timeout=600,
        env=user_env(env),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to give one up")
def test_a_busy_core_is_given_up_and_taken_back_with_the_same_text(tiny_en_ct2_dir):
    out = _run_script(tiny_en_ct2_dir)
    given = sorted(os.sched_getaffinity(0))
    idle, status = out["idle"]
    assert set(idle) == {idle[0]} and idle[0].strip() and status[:2] == [given, given]
    idle = idle[0]
    busy, (using, cores, others) = out["busy"]
    assert cores == given and len(using) == len(given) - 1 and others >= core_share.YIELD_AT
    assert out["busy_main"] == given and out["busy_child"].strip() == repr(given)
    after, (using, _, others) = out["after"]
    assert using == given and others < core_share.YIELD_AT
    assert set(busy) == {idle} and set(after) == {idle}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="threads=1 must be fewer cores")
def test_switched_off_by_the_environment_or_fewer_threads(tiny_en_ct2_dir):
    out = _run_script(tiny_en_ct2_dir, {core_share.ENV_SWITCH: "0"})
    assert out["idle"][1] is None and out["busy"][1] is None and out["after"][1] is None
    assert len(set(out["idle"][0] + out["busy"][0] + out["after"][0])) == 1
    # threads= all of the process's cores keeps it on; fewer turns it off for the process
    script = (
        "import os, sys; from whisperms import core_share, load_model\n"
        "from whisperms.compute_thread import compute_thread_ids as ids\n"
        "load_model(sys.argv[1], threads=len(os.sched_getaffinity(0))); core_share.check(ids)\n"
        "print(core_share.status() is not None)\n"
        "load_model(sys.argv[1], threads=1); core_share.check(ids); print(core_share.status())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tiny_en_ct2_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env=user_env(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "None"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to give one up")
def test_a_forked_child_starts_from_the_cores_given_at_import():
    script = (
        "import os\n"
        "from whisperms import compute_thread, core_share\n"
        "core_share.pin_threads([core_share.GIVEN[0]])  # as when the parent gave cores up\n"
        "read, write = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    try:\n"
        "        core_share.check(compute_thread.compute_thread_ids)\n"
        "        os.write(write, repr(core_share.status()[:2]).encode())\n"
        "    finally:\n"
        "        os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print(os.read(read, 1000).decode())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=user_env()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    given = sorted(os.sched_getaffinity(0))
    assert done.stdout.strip() == repr((given, given))


def test_proc_files_that_do_not_parse_turn_adapting_off_not_the_transcription(monkeypatch):
    # a kernel or sandbox whose /proc/stat reads unlike Linux's (here: a line that does not parse)
    def unparsable(cores):
        raise ValueError("invalid literal for int() with base 10: 'n/a'")

    monkeypatch.setattr(core_share, "_state", None)
    monkeypatch.setattr(core_share, "_disabled", False)
    monkeypatch.setattr(core_share, "sample", unparsable)
    core_share.check(lambda: [])
    assert core_share.status() is None and core_share._disabled


# Another process busy on our cores for a while, then idle: the next measurement gives up a core,
# unless restart() started it after the busy spell (as a graph's compile does, the busy process
# then being MindSpore's kernel build server).
RESTART_SCRIPT = """
import json, subprocess, sys, threading, time
from whisperms import core_share
ids, started, done = [], threading.Event(), threading.Event()
def idle():
    ids.append(threading.get_native_id())
    started.set()
    done.wait()
threading.Thread(target=idle, daemon=True).start()
started.wait()
def after_busy_spell(restart):
    core_share.check(lambda: ids)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(3 * core_share.CHECK_INTERVAL)
    spinner.kill()
    spinner.wait()
    if restart:
        core_share.restart()
    time.sleep(core_share.CHECK_INTERVAL + 0.2)
    core_share.check(lambda: ids)
    return core_share.status()[0]
print(json.dumps([after_busy_spell(True), after_busy_spell(False)]))
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to give one up")
def test_restart_leaves_out_what_other_processes_did_before_it():
    done = subprocess.run(
        [sys.executable, "-c", RESTART_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env=user_env(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    restarted, not_restarted = json.loads(done.stdout.strip().splitlines()[-1])
    given = sorted(os.sched_getaffinity(0))
    assert restarted == given
    assert len(not_restarted) == len(given) - 1


def _double(x):
    return x * 2


def test_a_graphs_compile_for_each_input_shape_restarts_the_measurement(monkeypatch):
    restarts = []
    monkeypatch.setattr(core_share, "restart", lambda: restarts.append(1))
    graph = _Graph("double", _double)
    x = Tensor(np.arange(3, dtype=np.float32))
    outs = [graph(("three",), x).asnumpy() for _ in range(3)]
    assert restarts == [1]
    assert all(out.tolist() == [0.0, 2.0, 4.0] for out in outs)
    graph(("four",), Tensor(np.ones(4, np.float32)))
    assert restarts == [1, 1]
