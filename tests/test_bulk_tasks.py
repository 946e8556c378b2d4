"""The bulk job's scheduler (bulk_tasks.run_tasks) on a real Ray cluster of two raylets on this
machine, one of which is removed mid-job as a lost machine is: its workers are small Ray actors
that write each file's output after a pause, so that a worker dies between its files. The whisperms
worker itself runs in test_bulk.py."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from whisperms.bulk_tasks import run_tasks
from whisperms.errors import WhispermsError

ray = pytest.importorskip("ray", reason="the bulk extra: pip install -e .[test]")
from ray.cluster_utils import Cluster  # noqa: E402

# a lost raylet is noticed within a few seconds (Ray's default: about 30)
FAST_HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
}


class Scribe:
    """A worker: each file's output (its path) written after `seconds`."""

    def __init__(self, out, seconds):
        self.out, self.seconds = Path(out), seconds
        (self.out / "worker.pid").write_text(str(os.getpid()))  # the last worker started's

    def ready(self):
        return True

    def transcribe(self, files):
        done = []
        for path, name in files:
            time.sleep(self.seconds)
            (self.out / name).write_text(path)
            done.append((path, None, 1.0))
        return done, []


@pytest.fixture
def cluster(request):
    head_cpus = request.param
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": head_cpus, "_system_config": FAST_HEALTH_CHECKS},
    )
    other = cluster.add_node(num_cpus=1)
    # the workers import Scribe from this module
    tests = {"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}}
    ray.init(address=cluster.address, log_to_driver=False, runtime_env=tests)
    try:
        yield cluster, other
    finally:
        ray.shutdown()
        cluster.shutdown()


def job(out, files, files_per_task, workers, seconds, **kwargs):
    """run_tasks over `files` (names) on a thread: (thread, reports, errors)."""
    actor = ray.remote(num_cpus=1)(Scribe)
    tasks = [
        [(f"/in/{name}", name) for name in files[i : i + files_per_task]]
        for i in range(0, len(files), files_per_task)
    ]
    reports, errors = [], []

    def run():
        try:
            run_tasks(
                lambda: actor.remote(str(out), seconds),
                workers,
                tasks,
                lambda worker, task: worker.transcribe.remote(task),
                lambda file: (out / file[1]).exists(),
                reports.extend,
                **kwargs,
            )
        except WhispermsError as error:
            errors.append(str(error))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, reports, errors


def wait_for(path, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.05)


@pytest.mark.parametrize("cluster", [1], indirect=True)
def test_a_lost_machines_files_go_to_the_workers_left(tmp_path, cluster):
    """A machine lost mid-job: its worker's replacement finds no room (the machine left is busy
    with its own worker) and the job waited on it for ever, the lost task's files bound to it. The
    worker left now takes them, and the job ends with every file written once."""
    cluster, other = cluster
    names = [f"f{i}.txt" for i in range(8)]
    thread, reports, errors = job(tmp_path, names, files_per_task=2, workers=2, seconds=1.0)
    wait_for(tmp_path / names[0])
    cluster.remove_node(other)
    thread.join(timeout=120)
    assert not thread.is_alive(), "the job waits for a worker that cannot start"
    assert not errors
    assert sorted(path for path, error, _ in reports if error is None) == sorted(
        f"/in/{name}" for name in names
    )
    assert all((tmp_path / name).read_text() == f"/in/{name}" for name in names)


@pytest.mark.parametrize("cluster", [0], indirect=True)
def test_no_room_for_any_worker_is_one_line(tmp_path, cluster):
    """Every machine with room lost: the job ends with a line once no worker has started for
    start_seconds, not never."""
    cluster, other = cluster
    thread, reports, errors = job(
        tmp_path,
        ["a.txt", "b.txt", "c.txt"],
        files_per_task=3,
        workers=1,
        seconds=1.0,
        start_seconds=3.0,
    )
    wait_for(tmp_path / "a.txt")
    cluster.remove_node(other)
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert errors and errors[0].startswith("no Ray worker started in 3 s with files left")


@pytest.mark.parametrize("cluster", [1], indirect=True)
def test_the_last_file_of_a_task_gets_a_try_of_its_own(tmp_path, cluster):
    """A worker killed with one file of its task unwritten (an out-of-memory kill from another
    process): that good file was failed at once, never tried alone, and the file written before
    the death was counted with no audio."""
    thread, reports, errors = job(
        tmp_path,
        ["a.txt", "b.txt"],
        files_per_task=2,
        workers=1,
        seconds=2.0,
        audio_seconds=lambda path: 7.5,
    )
    wait_for(tmp_path / "a.txt")
    os.kill(int((tmp_path / "worker.pid").read_text()), signal.SIGKILL)
    thread.join(timeout=120)
    assert not thread.is_alive() and not errors
    assert sorted(reports) == [("/in/a.txt", None, 7.5), ("/in/b.txt", None, 1.0)]
