"""Compiled graphs kept on disk as MindIR, so a later process skips most of the compile.

Compiling is mostly MindSpore's graph frontend turning the Python body into a graph. The first process compiles
each entry point with `mindspore.jit` as usual and saves the graph the frontend produced (~15 ms); later processes
load it into `nn.GraphCell`, which only goes through the backend. CPU, tiny.en, first call including one run: step
graph ~1.0-1.4 s compiled, ~0.3-0.45 s loaded; results bit for bit the same.

- A cached graph holds no weights: the per-layer entry points take them as inputs, and the parameters the others
  read (stem, ln_post, prompt logits, step) are saved by name only and bound, on load, to the loaded model's
  parameters of those names and shapes (sharing their memory). So one file serves any checkpoint of that size, and a
  graph reading anything else is not saved.
- A file is named by a hash of whisperms' source, MindSpore's version, the model's dimensions and runtime, the
  entry point's name, and its inputs' structure, shapes and dtypes: a changed input is a new file, never a stale
  graph. (MindSpore's own compile cache matched graphs by compile order; see inference.py.)
- Files are written under a temporary name and renamed, so a concurrent process never reads half a file; a file
  that fails to load is removed and saved again.
- The graph is read from MindSpore's jit executor (`get_func_graph_proto` on the phase the first call added to
  `ms_compile_cache`), which is not public API: any failure there only means the graph is not cached.
- Where: `$WHISPERMS_GRAPH_CACHE` if set (`0` turns the cache off), else ~/.cache/whisperms/graphs/mindspore-<ver>
  (under `$XDG_CACHE_HOME` if set). Without a writable folder nothing is cached.
"""
import functools
import hashlib
import json
import os
from pathlib import Path

import mindspore as ms
from mindspore import Tensor, nn
from mindspore._c_expression import JitExecutor_
from mindspore.graph import api as graph_api
from mindspore.train.mind_ir_pb2 import ModelProto

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


@functools.lru_cache(maxsize=None)
def source_fingerprint():
    """A hash of the package's Python sources, read once per process (the code this process runs): any code change
    names new files."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def signature(args):
    """Structure, shapes and dtypes of nested tuples of tensors: what a compiled graph is specialized to."""
    if isinstance(args, (tuple, list)):
        return [signature(item) for item in args]
    return [list(args.shape), str(args.dtype)]


class GraphCache:
    """One model's compiled entry points in `folder`: saved from the first jit compile, loaded as `nn.GraphCell`."""

    def __init__(self, folder, context, parameters):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.salt = [source_fingerprint(), ms.__version__, context]
        self.parameters = parameters  # name -> Parameter: what a loaded graph's parameters are bound to

    def path(self, name, args):
        key = hashlib.sha256(json.dumps([self.salt, name, signature(args)]).encode()).hexdigest()
        return self.folder / f"{name}-{key[:32]}.mindir"

    def load(self, name, args):
        """The cached graph for fn(*args) as a GraphCell (called with the same args), or None if there is none or
        it does not load (then it is removed, to be saved again)."""
        path = self.path(name, args)
        if not path.exists():
            return None
        try:
            cell = nn.GraphCell(ms.load(str(path)))
        except Exception:  # truncated, or from another build
            path.unlink(missing_ok=True)
            return None
        for parameter_name, parameter in cell.parameters_dict().items():
            own = self.parameters.get(parameter_name)
            if own is None or own.shape != parameter.shape or own.dtype != parameter.dtype:
                raise ValueError(f"{path.name}: parameter {parameter_name} is not one of this model's")
            parameter.set_data(Tensor.from_numpy(own.asnumpy()))  # shares the model's memory: no copy
        return cell

    @staticmethod
    def phases():
        """The jit phases compiled so far in this process; `save` finds the new graph by comparing with these."""
        return set(graph_api.ms_compile_cache)

    def save(self, name, args, before):
        """Save the graph jit compiled for fn(*args) since `phases()` returned `before`."""
        phases = self.phases() - before
        if len(phases) != 1:
            raise ValueError(f"expected one new compiled graph, found {len(phases)}")
        stream = JitExecutor_.get_instance().get_func_graph_proto(phases.pop(), "mind_ir", False)
        model = ModelProto()
        model.ParseFromString(stream)
        path = self.path(name, args)
        for parameter in model.graph.parameter:
            if parameter.raw_data or parameter.name.split(":", 1)[-1] not in self.parameters:
                raise ValueError(f"{path.stem}: parameter {parameter.name} is not one of the model's (or has data)")
        temporary = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
        try:
            temporary.write_bytes(stream)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
