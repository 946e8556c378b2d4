"""File descriptor 2 hidden while an audio decoder runs: libsndfile's MP3 decoder writes its notes
on damaged input straight to the process's stderr."""

import os
import sys
import threading
from contextlib import contextmanager
from typing import Optional

# File descriptor 2 is the process's: threads decoding at once share one redirection, made by the
# first to start and undone by the last to finish (each undoing its own put back the other's
# /dev/null for good).
_hidden_lock = threading.Lock()
_hidden_count = 0
_hidden_saved = None  # the real fd 2, duplicated, while hidden


@contextmanager
def decoder_output_hidden():
    """File descriptor 2 on /dev/null while libsndfile decodes: its MP3 decoder (mpg123) writes
    notes such as "Note: Trying to resync..." straight to the process's stderr on damaged input, and
    they are not ours to show (a file that fails is reported by AudioError). Anything another thread
    writes to fd 2 meanwhile is lost too."""
    global _hidden_count, _hidden_saved
    with _hidden_lock:
        if _hidden_count == 0:
            _hidden_saved = _hide_fd2()
        _hidden_count += 1
    try:
        yield
    finally:
        with _hidden_lock:
            _hidden_count -= 1
            if _hidden_count == 0 and _hidden_saved is not None:
                os.dup2(_hidden_saved, 2)
                os.close(_hidden_saved)
                _hidden_saved = None


def _hide_fd2() -> Optional[int]:
    """fd 2 pointed at /dev/null; a duplicate of what it was, or None where there is nothing to
    hide (no fd 2, as in a daemon; sys.stderr closed or None)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        return None
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
    finally:
        os.close(devnull)
    return saved
