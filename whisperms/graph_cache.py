"""Compiled graphs kept on disk as MindIR, so a later process skips most of the compile.

Compiling is mostly MindSpore's graph frontend turning the Python body into a graph; a graph exported once to MindIR
and loaded into `nn.GraphCell` skips that and only goes through the backend. CPU, tiny.en, first call including one
run: step graph ~1.4 s compiled, ~0.35-0.45 s loaded; an encoder block ~0.75 vs ~0.35-0.4 s (probe, same outputs
bit for bit).

- Entry points take every weight as an input (model.py), so a cached graph holds no weights: one file serves any
  checkpoint of that size, and a graph that came out with parameters is refused (their values would not load).
- A file is named by a hash of whisperms' source, MindSpore's version, the model's dimensions and runtime, the
  entry point's name, and its inputs' structure, shapes and dtypes: a changed input is a new file, never a stale
  graph. (MindSpore's own compile cache matched graphs by compile order; see inference.py.)
- Files are written under a temporary name and renamed, so a concurrent process never reads half a file; a file
  that fails to load is exported again.
- Where: `$WHISPERMS_GRAPH_CACHE` if set (`0` turns the cache off), else ~/.cache/whisperms/graphs/mindspore-<ver>
  (under `$XDG_CACHE_HOME` if set). Without a writable folder graphs are compiled as before.
"""
import hashlib
import json
import os
from pathlib import Path

import mindspore as ms
from mindspore import nn

GRAPH_CACHE_ENV = "WHISPERMS_GRAPH_CACHE"
OFF = ("0", "off", "false", "no")


def user_cache(kind):
    """~/.cache/whisperms/<kind>/mindspore-<version> (or under $XDG_CACHE_HOME), created; None if not writable."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return writable(root / "whisperms" / kind / f"mindspore-{ms.__version__}")


def writable(folder):
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return Path(folder) if os.access(folder, os.W_OK) else None


def graph_folder():
    """Where graphs are cached, or None when the cache is off or no folder is writable."""
    setting = os.environ.get(GRAPH_CACHE_ENV)
    if setting is None:
        return user_cache("graphs")
    if setting.strip().lower() in OFF or not setting.strip():
        return None
    return writable(setting)


def source_fingerprint():
    """A hash of the package's Python sources: any code change names new files."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def flatten(args):
    """Nested tuples of tensors -> (flat list of tensors, spec): spec is None for a tensor, else a tuple of specs."""
    flat = []

    def walk(value):
        if isinstance(value, (tuple, list)):
            return tuple(walk(item) for item in value)
        flat.append(value)
        return None

    return flat, walk(tuple(args))


def unflatten(flat, spec, start):
    """Inverse of `flatten`, written so MindSpore's graph frontend can parse it (spec is a constant)."""
    if spec is None:
        return flat[start], start + 1
    items = []
    for item_spec in spec:
        item, start = unflatten(flat, item_spec, start)
        items.append(item)
    return tuple(items), start


class _Flat(nn.Cell):
    """`fn` over flat tensor inputs: a MindIR graph takes tensors, not nested tuples."""

    def __init__(self, fn, spec):
        super().__init__()
        self.fn = fn
        self.spec = spec

    def construct(self, *flat):
        args, _ = unflatten(flat, self.spec, 0)
        return self.fn(*args)


class GraphCache:
    """Loads (or exports, then loads) `nn.GraphCell`s for one model's entry points from `folder`."""

    def __init__(self, folder, context):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.salt = [source_fingerprint(), ms.__version__, context]

    def path(self, name, flat, spec):
        signature = [(tuple(int(n) for n in t.shape), str(t.dtype)) for t in flat]
        key = hashlib.sha256(json.dumps([self.salt, name, repr(spec), signature]).encode()).hexdigest()
        return self.folder / f"{name}-{key[:32]}.mindir"

    def load(self, name, fn, args):
        """A GraphCell computing fn(*args) from `flatten(args)[0]`; exported to the folder on first use."""
        flat, spec = flatten(args)
        path = self.path(name, flat, spec)
        if path.exists():
            try:
                return _graph_cell(path)
            except Exception:  # unreadable (truncated, other build): export it again
                path.unlink(missing_ok=True)
        temporary = path.with_name(f"{path.stem}.{os.getpid()}.tmp.mindir")
        try:
            ms.export(_Flat(fn, spec), *flat, file_name=str(temporary), file_format="MINDIR")
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        return _graph_cell(path)


def _graph_cell(path):
    cell = nn.GraphCell(ms.load(str(path)))
    if cell.parameters_dict():
        raise ValueError(f"{path.name}: the exported graph holds parameters, whose values MindIR did not keep")
    return cell
