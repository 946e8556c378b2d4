"""Errors a user can act on. Each carries a one-line message; the CLI prints it and exits
non-zero."""

import os
import re
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from typing import Optional


def one_line(text: str) -> str:
    """A message kept to its one line: a line break in a name it quotes (a path given with one)
    written as \\n."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class _OneLine:
    """A message given as a string is made one line, whatever names it quotes."""

    def __init__(self, *args):
        if args and isinstance(args[0], str):
            args = (one_line(args[0]), *args[1:])
        super().__init__(*args)


class WhispermsError(_OneLine, Exception):
    """Base class: anything raised as this (or a subclass) is a user-facing, one-line problem."""


class AudioError(WhispermsError):
    """Audio that cannot be used: a file that is missing, not a file, unreadable or not decodable,
    or an array of a shape or dtype `transcribe` does not take."""


class CheckpointError(WhispermsError):
    """A checkpoint folder that is missing, of an unknown kind, corrupted, or mismatched with the
    network."""


class OptionsError(WhispermsError, ValueError):
    """An option value or a combination of options that cannot work (unknown language, impossible
    settings)."""


class OutputError(WhispermsError):
    """An output folder or file that cannot be written (not a folder, no permission)."""


class WhispermsWarning(_OneLine, UserWarning):
    """Something whisperms repaired and went on with (e.g. non-finite audio samples); the CLI prints
    it as one line."""


# whisperms' own modules: a warning is told at the first frame outside them (see warn)
_PACKAGE = __name__.partition(".")[0]


def _ours(frame) -> bool:
    name = frame.f_globals.get("__name__") or ""
    return name == _PACKAGE or name.startswith(_PACKAGE + ".")


def warn(message: str, category=WhispermsWarning):
    """warnings.warn, told at the line of the application's that called into whisperms, however many
    of whisperms' frames lie between (a fixed stacklevel is right for one path only: the same check
    is reached through whisperms.decode, model.decode and transcribe); where every frame is
    whisperms', at the outermost one. Frames are told by their module's name, not their file's path
    (a relative one would need the current folder, which may be gone)."""
    level, frame = 2, sys._getframe(1)
    while frame.f_back is not None and _ours(frame):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


def check_working_folder():
    """An OptionsError when the process's current folder has been deleted: relative paths cannot be
    resolved there, and MindSpore's import crashes the interpreter (it asks for the folder)."""
    try:
        os.getcwd()
    except FileNotFoundError:
        raise OptionsError(
            "the current folder no longer exists (deleted, or moved away): change to one that does"
        ) from None


class Terminated(BaseException):
    """SIGTERM (a scheduler's, `docker stop`'s, or MindSpore's own: during a graph run it turns
    Ctrl-C into SIGTERM) raised in the `whisperms` command's main thread, so that it ends as Ctrl-C
    ends it: files being written removed, one line, a status. A BaseException, as
    KeyboardInterrupt is: the handlers that keep one input's failure to that input must not
    swallow it."""


def raise_terminated(signum, frame):
    """A SIGTERM handler."""
    raise Terminated


class ForkedProcess(WhispermsError):
    """A model used in a process forked from the one that loaded it, or any graph run in a process
    forked after its parent ran one: MindSpore's runtime threads (and a tokenizer being read) are
    not in the child, whose first graph call would wait for ever."""

    ADVICE = (
        "start workers with multiprocessing's 'spawn' or 'forkserver' method and load the model in "
        "each"
    )

    def __init__(self, parent_ran_graphs: bool = False):
        if parent_ran_graphs:
            what = "the process this one was forked from ran MindSpore graphs: none can run here"
        else:
            what = "this model was loaded in the process this one was forked from, not in this one"
        super().__init__(f"{what}: {self.ADVICE}")


def check_same_process(pid: int):
    """ForkedProcess unless this is process `pid` (the loading one)."""
    if os.getpid() != pid:
        raise ForkedProcess()


# How MindSpore's C++ passes on a KeyboardInterrupt raised in Python code it called: a RuntimeError
# with this text, without the KeyboardInterrupt as its cause.
_TRANSLATED_INTERRUPT = "KeyboardInterrupt:"


def stopped_by(error: BaseException) -> Optional[str]:
    """How a signal stopped the run that raised `error`: "interrupted" if it is a
    KeyboardInterrupt or came while one was raised or handled, "terminated" for Terminated
    likewise, else None. Ctrl-C while MindSpore's C extension is imported comes out as
    "ImportError: initialization failed", or as MindSpore's RuntimeError "KeyboardInterrupt:
    <EMPTY MESSAGE>"; in tqdm's lock, as a RuntimeError raised while the KeyboardInterrupt was
    handled."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return "interrupted"
        if isinstance(error, Terminated):
            return "terminated"
        if isinstance(error, RuntimeError) and str(error).startswith(_TRANSLATED_INTERRUPT):
            return "interrupted"
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


# How MindSpore's runtime says an allocation failed: a RuntimeError with this section title (its
# first line is blank), the C++ library's std::bad_alloc passed on as a RuntimeError, or the
# untitled texts of its output actor and its copies between devices.
_MEMORY_FAILURES = (
    "Memory not enough",
    "std::bad_alloc",
    "memory isn't enough and alloc failed",
    "Allocate memory failed",
)


class RuntimeMemoryError(MemoryError):
    """MindSpore's runtime could not allocate what a graph run needs (numpy's arrays fail as
    MemoryError; MindSpore raises a RuntimeError, translated to this)."""


def memory_error(error: BaseException) -> Optional[RuntimeMemoryError]:
    """A RuntimeMemoryError saying what MindSpore could not allocate, for a RuntimeError of
    MindSpore's that says an allocation failed; else None."""
    if not isinstance(error, RuntimeError):
        return None
    text = str(error)
    if not any(failure in text for failure in _MEMORY_FAILURES):
        return None
    size = re.search(r"alloc size: (\d+)B", text)
    asked = f" ({int(size.group(1)) / 2**20:.0f} MiB at once)" if size else ""
    return RuntimeMemoryError(f"MindSpore could not allocate the memory a graph run needs{asked}")


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` says memory ran out (numpy's MemoryError, or MindSpore's failure of an
    allocation): never a reason to fall back to another way of doing the same work."""
    return isinstance(error, MemoryError) or memory_error(error) is not None


class UnforeseenError(WhispermsError):
    """One input's failure that no check foresaw (a bug of ours or a library's, numpy's memory
    running out): not the input's fault, as a server answers it. `cause`: the exception."""

    cause: Optional[BaseException] = None
    detail = ""  # the cause's type and first line


def unforeseen(error: Exception) -> UnforeseenError:
    """A failure no check foresaw as one input's error: its type and first line, so that a run over
    many inputs says it and goes on with the next, as openai-whisper's CLI skips such a file."""
    text = str(error).strip().splitlines()
    detail = type(error).__name__ + (f": {text[0]}" if text else "")
    failure = UnforeseenError(f"cannot transcribe it: {detail}")
    failure.cause, failure.detail = error, detail
    return failure


# Statuses as a shell reports a command a signal ended; "terminated" is also Ctrl-C during a
# MindSpore graph run, which MindSpore turns into SIGTERM.
STOP_STATUS = {"interrupted": 128 + signal.SIGINT, "terminated": 128 + signal.SIGTERM}


def end_stopped(prog: str, how: str, at_once: bool = False) -> int:
    """A command stopped by a signal (`how`, from stopped_by): one line ("PROG: interrupted"),
    then its status. A file being written is gone by now (its writer removes it). Once MindSpore is
    imported (or `at_once`) the process ends here: an import it did not finish leaves exit hooks
    that crash the interpreter's shutdown, with pages of tracebacks."""
    print(f"{prog}: {how}", file=sys.stderr)
    status = STOP_STATUS[how]
    # a failed import takes "mindspore" itself out of sys.modules, not what it had loaded
    if not at_once and not any(name.partition(".")[0] == "mindspore" for name in list(sys.modules)):
        return status
    exit_now(status)


def exit_now(status: int):
    """End the process with `status` at once, its standard streams flushed: past the interpreter's
    shutdown and the exit hooks of MindSpore's C++ (after an import cut short, or its runtime
    failing an allocation, those crash or wait for ever)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(status)


@contextmanager
def ctrl_c_ends(prog: str):
    """While the block runs (MindSpore imports: nothing is being written, no cleanup is due), Ctrl-C
    ends the process at once with one line and status 130. Raised as a KeyboardInterrupt there, it
    can come out of MindSpore's C++ as another error, or leave the import half done, whose exit
    hooks crash the interpreter's shutdown. Only Python's own handler is replaced, in the main
    thread (an application's handler, or SIGINT ignored, stays as it is), and it comes back after
    the block. Not for loading a model: a conversion's temporary folder is removed on the way
    out."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    signal.signal(signal.SIGINT, lambda signum, frame: end_stopped(prog, "interrupted", True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
