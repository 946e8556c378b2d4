"""Where the server keeps uploads while it transcribes them: a folder of its own in the system's
temporary folder, which the server removes when it ends.

A server ended by SIGKILL (the out-of-memory killer, `docker kill`, a second `kill -9`) cannot
remove it, and each upload in flight stayed there, tens of MB for a long recording. So each
server holds a lock on a file in its folder for as long as it runs: the kernel lets go of the lock
when the process ends, however it ends, and the next server started removes every such folder
whose lock it can take. A lock, not the process id in the folder's name, as servers in other
containers sharing the temporary folder see other process ids.
"""

import os
import shutil
import tempfile
import weakref
from typing import Optional

from .errors import OutputError

try:
    import fcntl
except ImportError:  # not POSIX: folders are still removed at the end, not after a SIGKILL
    fcntl = None

PREFIX = "whisperms-server-"
LOCK_NAME = "server.lock"


class UploadFolder:
    """A new folder for uploads, locked as its server's until `remove()`, this object's end or
    the interpreter's; made after removing the folders of servers that have ended."""

    def __init__(self, parent: Optional[str] = None):
        try:
            parent = parent or tempfile.gettempdir()
            remove_abandoned(parent)
            self.path = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
        except OSError as error:  # gettempdir's "No usable temporary directory...", mkdtemp's own
            where = f" in {parent}" if parent else ""
            raise OutputError(
                f"cannot make a folder for uploads{where}: {error.strerror or error}"
            ) from None
        lock = None
        if fcntl is not None:
            # locked under another name first, then renamed: a folder is only ever seen with its
            # lock file already held, so another server's cleanup cannot take it in between
            held = os.path.join(self.path, LOCK_NAME + ".new")
            lock = open(held, "w")
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(held, os.path.join(self.path, LOCK_NAME))
        self._remove = weakref.finalize(self, _remove, self.path, lock)

    def remove(self):
        self._remove()


def _remove(path: str, lock):
    shutil.rmtree(path, ignore_errors=True)
    if lock is not None:
        lock.close()


def remove_abandoned(parent: str):
    """Remove the upload folders in `parent` whose server has ended: those whose lock file is
    free. Folders of running servers, and anything this process may not open or remove, stay."""
    if fcntl is None:
        return
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(PREFIX) and not entry.is_symlink():
            _remove_if_abandoned(entry.path)


def _remove_if_abandoned(folder: str):
    try:
        lock = open(os.path.join(folder, LOCK_NAME))
    except OSError:  # not a folder, or no lock file (yet, or ever): nothing this code can judge
        return
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its server runs
            return
        shutil.rmtree(folder, ignore_errors=True)
