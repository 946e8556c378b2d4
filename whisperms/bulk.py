"""A corpus spread over many machines with Ray: `whisperms-bulk`.

    whisperms-bulk INPUT... --output_dir OUT [--model tiny.en] [--batch_size 8]
        [--output_format txt] [--address auto|HOST:PORT] [--workers N] [--cpus_per_worker 2]

Inputs are audio files, folders (their audio files, recursively, symlinked folders followed, each
real folder once) and lists (`@list.txt`: a path per line; blank lines and lines opening with `#`
are skipped). Each worker is a Ray actor holding the model, `--cpus_per_worker` cores each, on one
machine (as many workers as the cluster's cores allow, or `--workers`, capped to that); files go
out in tasks of `--files_per_task` to whichever worker is free, so faster machines take more, and
the files of a task share batches (the batched mode, `BatchedTranscriber.results`). Outputs keep
each file's path below its input folder (two `a.wav` in different folders do not collide; inputs
whose outputs would still be the same file, `a.wav` and `a.flac`, or two input folders' `a.wav`,
are refused before anything runs) and are written atomically, so `--output_dir` must be a folder
every machine sees; a file whose outputs all exist is skipped, so a run that stopped resumes where
it was. A file that cannot be read is reported in one line and the others go on; the exit status
is 1 if any file failed. An error that stops the job before it starts is one line, with status 2
for an option that cannot work (as the whisperms CLI's) and 1 for the rest.

Every machine needs whisperms installed (with the `bulk` extra) and the model (`--model_dir`).
"""

import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import time
import warnings
from typing import List, Optional, Sequence, Tuple

from .audio_files import declared_seconds
from .bulk_inputs import (
    AUDIO_EXTENSIONS,
    find_inputs,
    ignores_case,
    is_done,
    outputs,
    refuse_collisions,
    unwritable,
)
from .bulk_records import Records, setup_key
from .bulk_tasks import run_tasks
from .cli_args import EXIT_USAGE, Parser, optional
from .errors import (
    STOP_STATUS,
    OptionsError,
    Terminated,
    WhispermsError,
    WhispermsWarning,
    check_working_folder,
    one_line,
    raise_terminated,
    stopped_by,
)
from .output_files import check_output_folder

DEFAULT_FILES_PER_TASK = 16
DEFAULT_BEAM_SIZE = 5
DEFAULT_BEST_OF = 5
# A worker's cores when --cpus_per_worker is not given; a cluster whose machines all have fewer
# gets workers of as many as its largest machine has.
DEFAULT_CPUS_PER_WORKER = 2
# Seconds for the head of the Ray cluster at --address to take a connection and answer: Ray's own
# connect retries an address where nothing answers for minutes, or for ever.
RAY_ANSWER_TIMEOUT = 10.0
# The opening of an HTTP/2 client (its preface and an empty SETTINGS frame). A Ray head (its GCS,
# or the Ray Client server behind ray://) is a gRPC server, and answers with a SETTINGS frame.
HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_FRAME_HEADER = 9
HTTP2_SETTINGS = 4


class _Worker:
    """A Ray actor: the model, loaded once, and a BatchedTranscriber over each task's files."""

    def __init__(self, model: str, model_dir: Optional[str], threads: int, options: dict):
        from . import load_model
        from .batched import BatchedTranscriber

        # what whisperms warns of (an English-only model given another language, audio decoded
        # around damage) goes to the job's output with the task's results, not to a worker log
        with warnings.catch_warnings(record=True) as self.said:
            warnings.simplefilter("always", WhispermsWarning)
            self.model = load_model(model, download_root=model_dir, threads=threads)
            self.transcriber = BatchedTranscriber(self.model, progress=False, **options)

    def ready(self) -> bool:
        """Answered once the model is loaded (bulk_tasks gives tasks only to started workers)."""
        return True

    def transcribe(self, files: List[Tuple[str, str]], output_dir: str, output_format: str):
        """([(path, None or the error's one line, seconds of audio)] for the task's files, each
        written as soon as it is done; [whisperms' warnings since the worker started or its last
        task])."""
        done, answered = [], set()
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always", WhispermsWarning)
            try:
                for index, result in self.transcriber.results([path for path, _ in files]):
                    answered.add(index)
                    done.append(self._write(files[index], result, output_dir, output_format))
            except Exception as error:  # a bug: the task's other files fail, the job goes on
                reason = f"{type(error).__name__}: {error}"
                done += [
                    (path, f"not transcribed: {reason}", 0.0)
                    for index, (path, _) in enumerate(files)
                    if index not in answered
                ]
        ours = [w for w in [*self.said, *said] if issubclass(w.category, WhispermsWarning)]
        self.said = []
        return done, [str(w.message) for w in ours]

    @staticmethod
    def _write(file: Tuple[str, str], result, output_dir: str, output_format: str):
        """(path, None or the error's one line, seconds of audio) of one file; its outputs
        written."""
        from .writers import get_writer

        path, name = file
        if isinstance(result, WhispermsError):
            return (path, str(result), 0.0)
        folder = os.path.dirname(os.path.join(output_dir, name))
        try:
            os.makedirs(folder, exist_ok=True)
            # named after `name`, in the folder `name` is in
            get_writer(output_format, folder)(result.to_dict(), os.path.basename(name))
        except (OSError, WhispermsError) as error:
            return (path, f"cannot write its output: {error}", 0.0)
        return (path, None, result.info.duration)


def ray_head(address: Optional[str]) -> Optional[Tuple[str, int]]:
    """(host, port) of a Ray address `HOST:PORT` or `ray://HOST:PORT` ([IPv6]:PORT too); None
    for `auto`, `local` and an address without a port, which Ray resolves by its own rules."""
    if not address:
        return None
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_ray_head(address: Optional[str]) -> None:
    """A WhispermsError unless a gRPC server answers at the Ray address `address` within
    RAY_ANSWER_TIMEOUT: Ray itself waits minutes, or for ever, at a closed port, a machine that
    does not answer or a server that is not Ray's."""
    head = ray_head(address)
    if head is None:
        return
    deadline = time.monotonic() + RAY_ANSWER_TIMEOUT
    answer = b""
    try:
        with socket.create_connection(head, timeout=RAY_ANSWER_TIMEOUT) as connection:
            connection.sendall(HTTP2_HELLO)
            while len(answer) < HTTP2_FRAME_HEADER:
                connection.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = connection.recv(HTTP2_FRAME_HEADER - len(answer))
                if not chunk:
                    break
                answer += chunk
    except TimeoutError:
        reason = f"no answer in {RAY_ANSWER_TIMEOUT:g} s"
        raise WhispermsError(f"cannot reach the Ray cluster at {address}: {reason}") from None
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise WhispermsError(f"cannot reach the Ray cluster at {address}: {reason}") from None
    if len(answer) < HTTP2_FRAME_HEADER or answer[3] != HTTP2_SETTINGS:
        raise WhispermsError(
            f"cannot reach the Ray cluster at {address}: what answers there is not a Ray cluster"
        )


@contextlib.contextmanager
def _stderr_to(file):
    """The process's standard error (file descriptor 2, which Ray's C++ core writes to) sent to
    `file` for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def recorded_head() -> Optional[str]:
    """The head address the last `ray start` on this machine recorded (Ray's ray_current_cluster
    file, in the "ray" folder under RAY_TMPDIR, else TMPDIR, else /tmp), or None: where Ray
    connects when given no address or `auto`. Its head may be long gone."""
    temp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    try:
        with open(os.path.join(temp, "ray", "ray_current_cluster"), encoding="utf-8") as file:
            return file.read().strip() or None
    except (OSError, ValueError):
        return None


def _start_ray(address: Optional[str]) -> None:
    """Connect to the cluster at `address`, or a WhispermsError. None: a new local cluster (Ray's
    own default joins the cluster a `ray start` on this machine recorded, and waited for ever when
    its head had gone); `auto`: that recorded cluster, checked first. As in Ray, RAY_ADDRESS stands
    for None and `auto`."""
    import ray

    given = address
    if address in (None, "auto"):
        given = os.environ.get("RAY_ADDRESS") or (recorded_head() if address == "auto" else None)
    if given is None and address is None:
        address = "local"
    check_ray_head(given)
    # Connecting to a given head, Ray's core logs each failed try on standard error for tens of
    # seconds before it gives up; kept aside, the error is one line that says why. (Not when a
    # local cluster starts: its processes would inherit the file.)
    connecting = ray_head(given) is not None
    with tempfile.TemporaryFile(mode="w+", errors="replace") as said:
        try:
            with _stderr_to(said) if connecting else contextlib.nullcontext():
                # Ray's own notices stay out of the job's output
                ray.init(
                    address=address,
                    include_dashboard=False,
                    log_to_driver=False,
                    ignore_reinit_error=True,
                    logging_level=logging.ERROR,
                )
        # OSError: ConnectionError, and Ray's own folders unusable (RAY_TMPDIR a file, no rights)
        except (OSError, RuntimeError, ValueError, ray.exceptions.RayError) as error:
            said.seek(0)
            lines = str(error).strip().splitlines() or [type(error).__name__]
            # its first sentence: Ray's go on with advice for its own tools
            reason = lines[0].split(". ")[0].rstrip(".")
            if "Unauthenticated" in said.read():
                reason = (
                    "the cluster asks for its authentication token (Ray's token authentication: "
                    "set RAY_AUTH_MODE=token, and RAY_AUTH_TOKEN or ~/.ray/auth_token)"
                )
            where = "(a local one)" if address == "local" else f"at {given or address}"
            message = f"cannot start or reach the Ray cluster {where}: {reason}"
            raise WhispermsError(message) from None


@contextlib.contextmanager
def _stops_held():
    """Ctrl-C and SIGTERM while Ray starts, noted and acted on once it has started (or failed to):
    raised in the middle of ray.init they left its processes half started (ray.shutdown then
    crashed, or its agents ran on without the job), and the SIGTERM handler ray.init puts in place
    (sys.exit) ended the job without a word. The same signal a second time acts at once."""
    try:
        from ray._private import utils as ray_utils  # where ray.init sets its handler
    except ImportError:
        ray_utils = None
    ray_sets = getattr(ray_utils, "set_sigterm_handler", None)
    noted = []

    def stop(signum):
        return KeyboardInterrupt() if signum == signal.SIGINT else Terminated()

    def note(signum, frame):
        if signum in noted:
            raise stop(signum)
        noted.append(signum)

    stops = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.signal(s, note) for s in stops]
    if ray_sets is not None:
        ray_utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    except SystemExit as error:  # Ray's handler, where it was set all the same
        if error.code != signal.SIGTERM:
            raise
        noted.append(signal.SIGTERM)
    except Exception:
        if not noted:  # a stop asked for comes before Ray's failure to start
            raise
    finally:
        if ray_sets is not None:
            ray_utils.set_sigterm_handler = ray_sets
        for signum, handler in zip(stops, previous):
            signal.signal(signum, handler)
    if noted:
        raise stop(noted[0])


def _worker_shape(workers: Optional[int], cpus_per_worker: Optional[int], log) -> Tuple[int, int]:
    """(workers, CPUs each) to start: `workers`, or as many as fit, of `cpus_per_worker` CPUs
    (None: DEFAULT_CPUS_PER_WORKER, or all of the largest machine's when it has fewer). An actor
    needs its CPUs on one machine and Ray waits for them forever, so a worker bigger than every
    machine is an OptionsError, and more workers than fit are capped (with a line saying so)."""
    import ray

    nodes = [node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")]
    largest = int(max(nodes, default=0))
    if cpus_per_worker is None:
        cpus_per_worker = max(min(DEFAULT_CPUS_PER_WORKER, largest), 1)
    fit = sum(int(cpus // cpus_per_worker) for cpus in nodes)
    if fit < 1:
        raise OptionsError(
            f"--cpus_per_worker {cpus_per_worker} is more than any machine of the Ray cluster "
            f"has (at most {largest} CPUs)"
        )
    if workers is None:
        return fit, cpus_per_worker
    if workers > fit:
        log(
            f"whisperms-bulk: --workers {workers} capped to {fit}: the Ray cluster has CPUs for "
            f"{fit} workers of --cpus_per_worker {cpus_per_worker}"
        )
    return min(workers, fit), cpus_per_worker


def run(
    inputs: Sequence[str],
    output_dir: str,
    *,
    model: str = "tiny.en",
    model_dir: Optional[str] = None,
    output_format: str = "txt",
    address: Optional[str] = None,
    workers: Optional[int] = None,
    cpus_per_worker: Optional[int] = None,
    files_per_task: int = DEFAULT_FILES_PER_TASK,
    log=print,
    **options,
) -> dict:
    """Transcribe every input not done yet on a Ray cluster (`address`; None: a local one);
    returns counts {"files", "skipped", "transcribed", "failed", "audio_s", "seconds"} and the
    failures [(path, message)]."""
    import ray

    from .batched import DEFAULT_BATCH_SIZE
    from .hub import resolve
    from .transcribe_options import transcribe_options
    from .writers import WRITERS

    if output_format != "all" and output_format not in WRITERS:
        raise OptionsError(f"output_format must be one of {', '.join(WRITERS)} or all")
    counts = dict(workers=workers, cpus_per_worker=cpus_per_worker, files_per_task=files_per_task)
    for name, count in counts.items():
        if count is not None and count < 1:
            raise OptionsError(f"--{name} must be at least 1, got {count}")
    options.setdefault("batch_size", DEFAULT_BATCH_SIZE)
    transcribe_options(**options)  # refused options fail here, before any worker starts
    resolve(model, model_dir)  # and a model that is not there
    if not output_dir:  # abspath would make it the working folder
        check_output_folder(output_dir)
    # workers run elsewhere, from other folders: every path absolute
    output_dir = os.path.abspath(output_dir)
    files = find_inputs(inputs)
    if not files:  # a mistyped folder, or audio of a kind not looked for: say so, not "0 done"
        known = " ".join(AUDIO_EXTENSIONS)
        log(f"whisperms-bulk: warning: no audio files in the inputs (files named {known})")
    fold_case = ignores_case(output_dir)
    refuse_collisions(files, fold_case=fold_case)
    # outputs of another input under the name, a changed input, another model or options: redone
    records = Records(output_dir, setup_key(str(model), options), fold_case)
    formats = list(WRITERS) if output_format == "all" else [output_format]
    stale = {path for path, name in files if records.stale(name, path, formats)}
    todo = [
        (path, name)
        for path, name in files
        if path in stale or not is_done(output_dir, name, output_format)
    ]
    stats = {"files": len(files), "skipped": len(files) - len(todo), "transcribed": 0}
    stats.update(failed=0, audio_s=0.0, seconds=0.0, failures=[])
    if todo:
        # before any worker starts (every output would fail, after its decoding); the workers
        # make the folder as they write, so a job that writes nothing leaves none behind
        check_output_folder(output_dir)
    inputs_real = frozenset(os.path.realpath(path) for path, _ in files)
    refused = unwritable(todo, output_dir, output_format, inputs_real)
    for path, error in refused:  # before any decoding, each in one line as a failed file
        stats["failed"] += 1
        stats["failures"].append((path, error))
        log(f"whisperms-bulk: error: {one_line(path)}: {error}")
    refused_paths = {path for path, _ in refused}
    todo = [file for file in todo if file[0] not in refused_paths]
    for path, name in todo:  # a worker that dies must not find them and count its file written
        if path in stale:
            for output in outputs(output_dir, name, output_format):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(output)
    if not todo:
        return stats
    started = time.perf_counter()
    # SIGTERM ends the job as Ctrl-C does: noted while Ray starts (_stops_held), then by the task
    # loop (below); this one is put back at the end
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        with _stops_held():
            _start_ray(address)
        # from here SIGTERM is noted, and the task loop ends the job (see bulk_tasks.run_tasks)
        terminated = []
        signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))
        tasks = [todo[i : i + files_per_task] for i in range(0, len(todo), files_per_task)]
        workers, cpus_per_worker = _worker_shape(workers, cpus_per_worker, log)
        workers = min(workers, len(tasks))
        actor = ray.remote(num_cpus=cpus_per_worker)(_Worker)
        log(
            f"whisperms-bulk: {_count(len(todo), 'file')} on {_count(workers, 'worker')} of "
            f"{_count(cpus_per_worker, 'CPU')} ({stats['skipped']} done before)"
        )

        warned = set()

        def warn(message):  # once: every worker warns of the model, a retried file twice
            if message not in warned:
                warned.add(message)
                log(f"whisperms-bulk: warning: {message}")

        names = dict(todo)

        def report(done):
            for path, error, audio_s in done:
                if error is None:
                    stats["transcribed"] += 1
                    stats["audio_s"] += audio_s
                    try:
                        records.add(names[path], path, formats)
                    except OSError as problem:  # the outputs stand; a later run redoes nothing
                        warn(f"cannot record what {names[path]} was made from: {problem}")
                else:
                    stats["failed"] += 1
                    stats["failures"].append((path, error))
                    # the audio loader's own messages name the file already
                    shown = one_line(path)  # the error's own mention of it is made one line
                    about = error if shown in error else f"{shown}: {error}"
                    log(f"whisperms-bulk: error: {about}")

        try:
            run_tasks(
                lambda: actor.remote(model, model_dir, cpus_per_worker, options),
                workers,
                tasks,
                lambda w, task: w.transcribe.remote(task, output_dir, output_format),
                lambda file: is_done(output_dir, file[1], output_format),
                report,
                stopped=lambda: bool(terminated),
                warn=warn,
                audio_seconds=lambda path: declared_seconds(path) or 0.0,
            )
        except SystemError as error:
            # Ctrl-C or SIGTERM while Ray's C code waits: its handler's exception comes back
            # wrapped ("returned a result with an exception set")
            if isinstance(error.__cause__, (KeyboardInterrupt, Terminated)):
                raise error.__cause__ from None
            raise
    finally:
        # Ctrl-C pressed again while Ray stops (it takes a second or two) broke off its shutdown:
        # its agents ran on, and the job ended with status 1. The stop under way answers it, here
        # and up to the job's last line (a stop in flight leaves both signals ignored)
        stopping = stopped_by(sys.exc_info()[1]) is not None
        held = [signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)]
        try:
            ray.shutdown()
        finally:
            if not stopping:
                signal.signal(signal.SIGINT, held[0])
                signal.signal(signal.SIGTERM, previous)
            else:  # Ray's shutdown put SIGTERM's default back
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stats["seconds"] = time.perf_counter() - started
    return stats


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def main(argv=None) -> int:
    parser = Parser(prog="whisperms-bulk", description="Transcribe a corpus on a Ray cluster.")
    parser.add_argument(
        "inputs",
        nargs="+",
        help="audio files, folders, or @lists of paths; two whose outputs would be the same file "
        "(a.wav and a.flac, or a.wav in two input folders) are refused",
    )
    parser.add_argument("--output_dir", "-o", required=True, help="a folder every machine sees")
    parser.add_argument("--model", default="tiny.en", help="a model name or a model folder")
    parser.add_argument("--model_dir", default=None, help="where model names are found")
    parser.add_argument(
        "--output_format", "-f", default="txt", help="txt, vtt, srt, tsv, json, all"
    )
    parser.add_argument("--batch_size", type=int, default=None)
    # the whisperms CLI's defaults (openai's CLI's): the same text for the same file
    parser.add_argument(
        "--beam_size", type=optional(int), default=DEFAULT_BEAM_SIZE, help="None: greedy"
    )
    parser.add_argument("--best_of", type=optional(int), default=DEFAULT_BEST_OF)
    parser.add_argument("--language", default=None)
    parser.add_argument("--address", default=None, help="a Ray cluster ('auto'); none: a local one")
    parser.add_argument(
        "--workers", type=int, default=None, help="default, and at most: as many as the CPUs fit"
    )
    parser.add_argument(
        "--cpus_per_worker",
        type=int,
        default=None,
        help=f"on one machine; default {DEFAULT_CPUS_PER_WORKER}, or a machine's all if fewer",
    )
    parser.add_argument("--files_per_task", type=int, default=DEFAULT_FILES_PER_TASK)
    args = parser.parse_args(argv)
    try:
        check_working_folder()
    except OptionsError as error:
        print(f"whisperms-bulk: error: {error}", file=sys.stderr)
        return 1
    # from here a scheduler's SIGTERM is one line, as Ctrl-C (it ended the job without a word
    # while Ray was imported or the corpus scanned)
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        import ray  # noqa: F401
    except ImportError:
        print("whisperms-bulk: needs Ray: pip install 'whisperms[bulk]'", file=sys.stderr)
        return 1
    except BaseException as error:  # Ctrl-C while Ray is imported: its traceback
        how = stopped_by(error)
        if how is None:
            raise
        print(f"whisperms-bulk: {how} (the files written so far are kept)", file=sys.stderr)
        return STOP_STATUS[how]
    options = {
        name: getattr(args, name)
        for name in ("batch_size", "beam_size", "best_of", "language")
        if getattr(args, name) is not None
    }

    def log(line):
        print(line, file=sys.stderr, flush=True)

    try:
        stats = run(
            args.inputs,
            args.output_dir,
            model=args.model,
            model_dir=args.model_dir,
            output_format=args.output_format,
            address=args.address,
            workers=args.workers,
            cpus_per_worker=args.cpus_per_worker,
            files_per_task=args.files_per_task,
            log=log,
            **options,
        )
    except WhispermsError as error:
        log(f"whisperms-bulk: error: {error}")
        # as the whisperms CLI: an option that cannot work is a usage error (argparse's status);
        # inputs, the model, the output folder and the cluster are runtime ones
        return EXIT_USAGE if isinstance(error, OptionsError) else 1
    except BaseException as error:  # Ctrl-C, SIGTERM, or what a library raised in their place
        how = stopped_by(error)
        if how is None:
            raise
        log(f"whisperms-bulk: {how} (the files written so far are kept)")
        return STOP_STATUS[how]
    log(
        f"whisperms-bulk: {stats['transcribed']} transcribed ({stats['audio_s']:.1f} s of audio in "
        f"{stats['seconds']:.1f} s), {stats['skipped']} done before, {stats['failed']} failed"
    )
    return 1 if stats["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
