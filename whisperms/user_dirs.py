"""The user's cache folder, where models, compiled graphs and generated kernels are kept."""

import os
from pathlib import Path
from typing import Optional


def cache_home() -> Optional[Path]:
    """`$XDG_CACHE_HOME` when it is absolute (the XDG spec ignores a relative one), else ~/.cache;
    None where there is no home folder (HOME unset and the user not in the password database, as in
    a container started with an arbitrary uid or `env -i`)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    try:
        return Path.home() / ".cache"
    except (RuntimeError, KeyError):
        return None
