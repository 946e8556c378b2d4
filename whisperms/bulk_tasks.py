"""The bulk job's tasks on its Ray workers: each worker takes the next task when it is free.

A worker that dies in a task (killed, out of memory, a crash in native code) is replaced by a new
one, and the files of its task that were not written yet go back to the queue one per task: a file
that kills its worker then fails alone, with a line saying so, and the others are done. A worker
that cannot start at all (its model does not load there) ends the job, as would workers dying
task after task with no task finishing.
"""

from collections import deque
from typing import Callable, List, Optional, Sequence, Tuple

from .errors import Terminated, WhispermsError

# Ray's wait lets Ctrl-C through but not SIGTERM: it returns this often, so that a scheduler's
# SIGTERM ends the job within about this long.
WAIT_SECONDS = 1.0
# Workers dying one after another, none finishing a task in between, beyond one per worker and
# these: a cause that is not one file's (the workers' machine, their memory), so the job ends.
DEATHS_BEYOND_WORKERS = 3

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
) -> None:
    """Run `tasks` on `workers` workers made by `start_worker()`: `call(worker, task)` gives the
    ObjectRef of the task's ([Done], [warning]); each [Done] is passed to `report` as it comes, and
    each warning (a worker's, which would stay in its log) to `warn`. `written(file)`: whether
    a file's outputs are all there (after a worker died in its task). `stopped()`: whether a SIGTERM
    came (raised as Terminated here; an exception its handler raises inside Ray's wait is lost)."""
    import ray

    pending = deque(tasks)
    idle = [start_worker() for _ in range(workers)]
    running = {}  # ObjectRef -> (worker, task)
    deaths = 0  # workers that died since a task last finished
    while pending or running:
        while idle and pending:
            worker, task = idle.pop(), pending.popleft()
            running[call(worker, task)] = (worker, task)
        ready, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_SECONDS)
        if stopped():
            raise Terminated
        for ref in ready:
            worker, task = running.pop(ref)
            try:
                done, said = ray.get(ref)
            except ray.exceptions.RayActorError as error:
                reason = worker_error(error)
                if error.actor_init_failed:
                    raise WhispermsError(f"a Ray worker could not start: {reason}") from None
                deaths += 1
                if deaths > workers + DEATHS_BEYOND_WORKERS:
                    raise WhispermsError(
                        f"Ray workers keep dying ({deaths} in a row, the last: {reason})"
                    ) from None
                left = [file for file in task if not written(file)]
                report([(path, None, 0.0) for path, name in task if (path, name) not in left])
                if len(left) == 1:
                    report([(left[0][0], f"its worker died in it: {reason}", 0.0)])
                else:
                    pending.extendleft([file] for file in reversed(left))
                idle.append(start_worker())
                continue
            except ray.exceptions.RayError as error:
                raise WhispermsError(f"a Ray worker failed: {worker_error(error)}") from None
            deaths = 0
            idle.append(worker)
            for message in said:
                warn(message)
            report(done)
