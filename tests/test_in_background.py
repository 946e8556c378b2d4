"""lazy.InBackground: work done on a thread of its own, waited for where it is needed."""

import subprocess
import sys
import threading

import pytest
from user_env import user_env

from whisperms.lazy import InBackground


def test_the_work_runs_on_another_thread_and_get_returns_its_result():
    gate = threading.Event()
    ran_on = []

    def make():
        ran_on.append(threading.get_ident())
        gate.wait(timeout=30)
        return [1, 2, 3]

    job = InBackground(make)
    gate.set()  # the caller went on while the work waited
    assert job.get() == [1, 2, 3] and job.get() == [1, 2, 3]
    assert ran_on and ran_on[0] != threading.get_ident()


def test_an_error_of_the_work_is_raised_by_get():
    def make():
        raise ValueError("no such embedding")

    job = InBackground(make)
    with pytest.raises(ValueError, match="no such embedding"):
        job.get()


def test_a_fork_waits_for_the_work_and_the_child_has_its_result():
    """Work cut off by a fork can leave a library's lock held in the child (the tokenizer parser's
    did, and the child then hung): the fork waits, and the child does not do the work again."""
    script = (
        "import os, time\n"
        "from whisperms.lazy import InBackground\n"
        "def make():\n"
        "    time.sleep(1.0)\n"
        "    return os.getpid()\n"
        "job = InBackground(make)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if job.get() == os.getppid() else 1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(os.waitstatus_to_exitcode(status), job.get() == os.getpid())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=user_env()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0", "True"]


def test_a_child_forked_before_the_work_ended_does_it_itself():
    """Work that outlasts the fork's wait (here it waits on an event set only after the fork)."""
    script = (
        "import os, threading\n"
        "from whisperms import lazy\n"
        "from whisperms.lazy import InBackground\n"
        "lazy.FORK_WAIT_SECONDS = 0.5\n"
        "gate = threading.Event()\n"
        "job = InBackground(lambda: gate.wait() and 42)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    gate.set()  # the child's own copy of the event: its parent's thread is not here\n"
        "    os._exit(0 if job.get() == 42 else 1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "gate.set()\n"
        "print(os.waitstatus_to_exitcode(status), job.get())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=user_env()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0", "42"]
