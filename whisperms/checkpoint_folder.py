"""Putting a written folder in place as one step.

A conversion writes into a hidden temporary folder, then renames it onto its name. A folder that
cannot be renamed onto (an empty folder, and any mount point: a container's volume, an NFS or tmpfs
mount) is filled in place instead, file by file, the file that marks the folder complete moved last.
The temporary folders name their machine and process and are locked while written, so that a
killed writer's are told from a running one's (`remove_abandoned`), and another writer's are not
taken for the folder's contents.
"""

import errno
import glob
import os
import re
import shutil
import socket
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import CheckpointError
from .writers import new_file_mode

try:
    import fcntl
except ImportError:  # not a POSIX system: no locks, process ids alone tell the abandoned
    fcntl = None

PARTIAL, OLD = "partial", "old"  # a conversion's folder being written, and the one it replaces
# what a file system keeps at the top of a volume: not the folder's contents, never removed
VOLUME_ENTRIES = ("lost+found",)


def scratch(folder: Path, name: str, kind: str) -> Path:
    """A hidden folder name in `folder` for a conversion's temporary copy of `name`, naming the
    machine and process that writes it."""
    return folder / f".{name}.{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextmanager
def claimed(folder: Path):
    """Make the temporary folder `folder` and hold a lock on it while the block runs: a folder
    whose lock can be taken is abandoned (its writer is gone, whatever its process id means in
    this container), one whose lock is held is being written."""
    folder.mkdir()
    with _locked(folder, wait=True):
        yield folder


@contextmanager
def _locked(folder: Path, wait: bool):
    """An exclusive flock on `folder` for the block; with wait=False, BlockingIOError when another
    process holds it. Where the file system has no locks, the block runs unlocked."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise
        except OSError:  # no locks here (some network file systems)
            pass
        yield
    finally:
        os.close(fd)


def _scratch_owner(entry: str, name: str):
    """(kind, host, pid) of a temporary folder name of `name`'s conversions, else None."""
    found = re.fullmatch(rf"\.{re.escape(name)}\.(\w+)-(.+)-(\d+)-[0-9a-f]{{8}}", entry)
    if found is None or found.group(1) not in (PARTIAL, OLD):
        return None
    return found.group(1), found.group(2), int(found.group(3))


def contents(folder: Path) -> list:
    """The names in `folder` other than its own conversions' temporary folders (which a conversion
    filling it in place keeps inside it) and, on a volume, the file system's own entries."""
    names = [e for e in os.listdir(folder) if _scratch_owner(e, folder.name) is None]
    if any(n in VOLUME_ENTRIES for n in names) and is_mount_point(folder):
        names = [n for n in names if n not in VOLUME_ENTRIES]
    return names


def remove_abandoned(real: Path):
    """Remove the temporary folders of conversions to `real` whose process is gone (killed: an
    out-of-memory kill while a large model converts), beside it or inside it (an empty folder filled
    in place): they hold up to a model's size, and one inside an empty destination made it look
    written. A checkpoint set aside to be replaced whose replacement never came is put back. Only
    this machine's processes are checked (a folder another machine writes on a shared disk is left
    to it), and a folder whose lock is still held is being written (a process of that id in
    another container)."""
    for folder in (real, real.parent):
        try:
            entries = list(folder.glob(f".{glob.escape(real.name)}.*-*-*-*"))
        except OSError:
            continue
        for entry in entries:
            owner = _scratch_owner(entry.name, real.name)
            if not owner or owner[1] != socket.gethostname() or _running(owner[2]):
                continue
            try:
                with _locked(entry, wait=False):
                    if owner[0] == OLD and folder == real.parent and not os.path.lexists(real):
                        entry.rename(real)
                    else:
                        shutil.rmtree(entry, ignore_errors=True)
            except OSError:  # held (BlockingIOError), or gone meanwhile
                continue


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: running
        pass
    return True


def is_mount_point(path: Path) -> bool:
    """Whether `path` is a mount point, a bind mount within one file system included (which
    os.path.ismount does not see, and which cannot be renamed either)."""
    if os.path.ismount(path):
        return True
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            # the fifth field, with space, tab, newline and backslash escaped as octal
            points = {_unescape(line.split()[4]) for line in f if len(line.split()) > 4}
    except OSError:  # not Linux
        return False
    return os.path.realpath(path) in points


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def fill_in_place(tmp: Path, dst: Path, marker: str, replacing: bool):
    """Move the files of `tmp` (a folder inside `dst`) up into `dst`, `marker` (the file whose
    presence makes a folder a checkpoint) last.

    `replacing`: `dst` holds an earlier checkpoint, whose files are replaced (its marker removed
    first, so that no reader takes the mix for a checkpoint); anything else in it is left. Else
    `dst` must still be empty but for other conversions' temporary folders: the first conversion
    to finish fills it, the others fail; one stopped midway takes back what it moved."""
    names = sorted(os.listdir(tmp), key=lambda n: n == marker)
    with _locked(dst, wait=True):  # a second conversion finishing at the same moment waits
        if replacing:
            with suppress(FileNotFoundError):
                os.remove(dst / marker)
        elif contents(dst):
            raise CheckpointError(f"{dst}: written meanwhile, by another conversion?")
        moved = []
        try:
            for name in names:
                os.replace(tmp / name, dst / name)
                moved.append(name)
        except BaseException:
            if not replacing:
                for name in moved:
                    with suppress(OSError):
                        os.remove(dst / name)
            raise
    tmp.rmdir()


def move_into_place(tmp: Path, dst: Path, overwrite: bool):
    """Rename `tmp` onto `dst`; with `overwrite`, an existing `dst` is set aside first and removed
    once `tmp` is in its place (put back if that fails)."""
    if not overwrite or not dst.exists():
        try:
            # fails on a folder that is not empty: another conversion may have written it since
            # the check
            tmp.rename(dst)
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise CheckpointError(
                    f"{dst}: already exists and is not empty (written meanwhile, by another "
                    "conversion?)"
                ) from None
            raise
        return
    old = scratch(dst.parent, dst.name, OLD)
    dst.rename(old)
    try:
        tmp.rename(dst)
    except OSError:
        old.rename(dst)
        raise
    shutil.rmtree(old, ignore_errors=True)


def user_file_modes(folder: Path):
    """Give every file in `folder` the mode a file the user creates gets (0o666 minus the umask):
    safetensors creates its file 0o600, which would leave a converted model unreadable to the user's
    group."""
    mode = new_file_mode()
    for path in folder.iterdir():
        path.chmod(mode)
