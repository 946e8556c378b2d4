"""The bulk job's tasks on its Ray workers: each worker takes the next task when it is free.

A worker that dies in a task (killed, out of memory, a crash in native code, its machine lost) is
replaced by a new one, and the files of its task that were not written yet go back to the queue one
per task: a file that kills its worker alone then fails, with a line saying so, and the others are
done. Tasks go only to workers that have started (a replacement may find no room on the cluster
until its machine comes back: the workers left take its files meanwhile). A worker that cannot
start at all (its model does not load there) ends the job, as do workers dying task after task with
no task finishing, or no worker running for WORKER_START_SECONDS.
"""

import time
from collections import deque
from typing import Callable, List, Optional, Sequence, Tuple

from .errors import Terminated, WhispermsError

# Ray's wait lets Ctrl-C through but not SIGTERM: it returns this often, so that a scheduler's
# SIGTERM ends the job within about this long.
WAIT_SECONDS = 1.0
# Workers dying one after another, none finishing a task in between, beyond one per worker and
# these: a cause that is not one file's (the workers' machine, their memory), so the job ends.
DEATHS_BEYOND_WORKERS = 3
# The longest the job waits with files left and no worker started or working (a worker loads and
# may first convert its model; one that finds no room on the cluster waits for ever)
WORKER_START_SECONDS = 900.0

File = Tuple[str, str]  # (path, output name)
Done = Tuple[str, Optional[str], float]  # (path, None or the error's one line, seconds of audio)


def worker_error(error) -> str:
    """The last non-empty line of a Ray error (its first lines are Ray's own traceback)."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__


def run_tasks(
    start_worker: Callable[[], object],
    workers: int,
    tasks: Sequence[List[File]],
    call: Callable[[object, List[File]], object],
    written: Callable[[File], bool],
    report: Callable[[List[Done]], None],
    stopped: Callable[[], bool] = lambda: False,
    warn: Callable[[str], None] = lambda message: None,
    audio_seconds: Callable[[str], float] = lambda path: 0.0,
    start_seconds: float = WORKER_START_SECONDS,
) -> None:
    """Run `tasks` on `workers` workers made by `start_worker()` (a Ray actor with a `ready`
    method): `call(worker, task)` gives the ObjectRef of the task's ([Done], [warning]); each
    [Done] is passed to `report` as it comes, and each warning (a worker's, which would stay in its
    log) to `warn`. `written(file)`: whether a file's outputs are all there (after a worker died in
    its task), `audio_seconds(path)` the length such a file is counted with. `stopped()`: whether a
    SIGTERM came (raised as Terminated here; an exception its handler raises inside Ray's wait is
    lost)."""
    import ray

    pending = deque((list(task), False) for task in tasks)  # (files, a retry of one file alone)
    starting = {}  # the ObjectRef of a worker's ready() -> the worker

    def start():
        worker = start_worker()
        starting[worker.ready.remote()] = worker

    for _ in range(workers):
        start()
    idle, running = [], {}  # running: ObjectRef -> (worker, files, alone)
    deaths = 0  # workers that died since a task last finished
    working = time.monotonic()  # when a worker last was started or working
    try:
        while pending or running:
            while idle and pending:
                worker, (task, alone) = idle.pop(), pending.popleft()
                running[call(worker, task)] = (worker, task, alone)
            if running or idle:
                working = time.monotonic()
            elif time.monotonic() - working > start_seconds:
                raise WhispermsError(
                    f"no Ray worker started in {start_seconds:.0f} s with files left (a cluster "
                    "with no room for one?)"
                )
            ready, _ = ray.wait([*running, *starting], num_returns=1, timeout=WAIT_SECONDS)
            if stopped():
                raise Terminated
            for ref in ready:
                if ref in starting:
                    worker = starting.pop(ref)
                    try:
                        ray.get(ref)
                    except ray.exceptions.RayActorError as error:
                        if error.actor_init_failed:
                            raise WhispermsError(
                                f"a Ray worker could not start: {worker_error(error)}"
                            ) from None
                        deaths = _died(deaths, workers, error)
                        start()
                        continue
                    idle.append(worker)
                    continue
                worker, task, alone = running.pop(ref)
                try:
                    done, said = ray.get(ref)
                except ray.exceptions.RayActorError as error:
                    # its ready() answered: it started, and died since
                    reason = worker_error(error)
                    deaths = _died(deaths, workers, error)
                    left = [file for file in task if not written(file)]
                    report([(p, None, audio_seconds(p)) for p, n in task if (p, n) not in left])
                    if alone:
                        died = f"its worker died in it: {reason}"
                        report([(path, died, 0.0) for path, _ in left])
                    else:
                        pending.extendleft(([file], True) for file in reversed(left))
                    start()
                    continue
                except ray.exceptions.RayError as error:
                    raise WhispermsError(f"a Ray worker failed: {worker_error(error)}") from None
                deaths = 0
                idle.append(worker)
                for message in said:
                    warn(message)
                report(done)
    finally:
        for worker in starting.values():  # waiting for room: not to start once the job is over
            ray.kill(worker)


def _died(deaths: int, workers: int, error) -> int:
    """`deaths` + 1, or a WhispermsError once workers keep dying."""
    deaths += 1
    if deaths > workers + DEATHS_BEYOND_WORKERS:
        raise WhispermsError(
            f"Ray workers keep dying ({deaths} in a row, the last: {worker_error(error)})"
        ) from None
    return deaths
