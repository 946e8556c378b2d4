"""Model names -> checkpoints: a local `ROOT/NAME` folder first, else the Hugging Face hub,
converted once into `ROOT/NAME`."""

import os
from pathlib import Path

import numpy as np

from .checkpoint_folder import contents, remove_abandoned
from .convert import detect_format, is_whisperms, read_checkpoint, save_checkpoint
from .errors import CheckpointError
from .released import RELEASED_DIMENSIONS, model_name
from .user_dirs import cache_home

WEIGHTS_ENV = "WHISPERMS_WEIGHTS"  # overrides where named models are looked up and cached

ALIASES = {"large": "large-v3", "turbo": "large-v3-turbo"}
# what a conversion reads from a hub repository: the float32 copies some repositories also hold
# (model.fp32-0000N-of-0000M.safetensors) would triple large-v3's download
HUB_FILES = ["*.json", "*.txt", "model.safetensors", "model-*-of-*.safetensors"]
HF_REPOS = {
    name: f"openai/whisper-{'large' if name == 'large-v1' else name}"
    for name in RELEASED_DIMENSIONS
}


def available_models():
    return list(RELEASED_DIMENSIONS) + list(ALIASES)


def weights_root() -> Path:
    """`$WHISPERMS_WEIGHTS`, else the repository's `weights/` folder, else `whisperms` in the user's
    cache folder (`$XDG_CACHE_HOME`, else ~/.cache, as openai's `whisper` folder)."""
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV]).expanduser()
    repo_weights = Path(__file__).resolve().parent.parent / "weights"
    if repo_weights.is_dir():
        return repo_weights
    home = cache_home()
    if home is None:
        raise CheckpointError(
            "no folder to keep models in: the home folder is unknown (HOME is not set); set "
            f"{WEIGHTS_ENV} or XDG_CACHE_HOME, or give a checkpoint folder as the model"
        )
    return home / "whisperms"


def released_name(name_or_path):
    """The released model a name or alias means ("large" -> "large-v3"), else None."""
    name = ALIASES.get(str(name_or_path), str(name_or_path))
    return name if name in RELEASED_DIMENSIONS else None


def is_checkpoint(folder: Path) -> bool:
    """Whether `folder` holds a checkpoint of a format whisperms reads (whole or not)."""
    try:
        detect_format(folder)
        return True
    except CheckpointError:
        return False


def resolve(name_or_path, download_root=None) -> Path:
    """A checkpoint folder for a path or a model name; downloads and converts a named model once.

    An existing path is taken as given, unless it is not a checkpoint and the argument is also a
    model name (a folder of transcripts named "tiny.en" in the current folder): then the name.
    `ROOT/NAME` (ROOT: `download_root`, else weights_root()) is used when it holds a checkpoint,
    filled by the download when missing or empty."""
    path = Path(name_or_path).expanduser()
    name = released_name(name_or_path)
    if path.exists() and (name is None or is_checkpoint(path)):
        return path
    if name is None:
        repo = "/" in str(name_or_path) and not str(name_or_path).startswith(("/", "."))
        raise CheckpointError(
            f"'{name_or_path}' is neither a checkpoint folder nor a model name "
            f"(known: {', '.join(available_models())})"
            + (
                "; a Hugging Face repository is not downloaded by its id: download it (e.g. "
                f"huggingface-cli download {name_or_path} --local-dir DIR) and give DIR"
                if repo
                else ""
            )
        )
    root = Path(download_root).expanduser() if download_root else weights_root()
    local = root / name
    # a conversion into an empty folder (a mount point) that was killed left its temporary folder
    # there, and one still running has it there: neither makes the folder written
    real = Path(os.path.realpath(local))
    remove_abandoned(real)
    try:
        written = real.is_dir() and bool(contents(real))
    except OSError:  # unreadable: read_checkpoint says so
        written = True
    if written:
        return local  # read_checkpoint says what is wrong with a folder that is not a checkpoint
    return _download(name, local, download_root)


def check_release(name_or_path, folder: Path, dims):
    """A CheckpointError when a model name found a folder holding another model's weights (a copy
    put at ROOT/NAME by hand)."""
    name = released_name(name_or_path)
    if name is None or Path(name_or_path).expanduser() == folder:
        return
    if dims != RELEASED_DIMENSIONS[name]:
        found = model_name(dims) or "another model"
        raise CheckpointError(
            f"{folder}: holds {found}'s weights, not {name}'s: put {name} there, or give the "
            "folder's path as the model"
        )


def _download(name, dst: Path, download_root=None) -> Path:
    try:
        from huggingface_hub import snapshot_download

        # with a download_root, the hub's files go there too, as faster-whisper's download_root
        # (its cache_dir); else to the hub's own cache
        cache = {"cache_dir": str(dst.parent)} if download_root else {}
        folder = snapshot_download(HF_REPOS[name], allow_patterns=HUB_FILES, **cache)
    # offline, hub unreachable, repo missing, disk full: all end the same way for the user
    except Exception as error:
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"model '{name}' is not in {dst.parent} and could not be downloaded from the Hugging "
            f"Face hub ({type(error).__name__}{': ' + reason if reason else ''}); put a "
            f"whisperms, Hugging Face or CTranslate2 folder at {dst}"
            + ("" if download_root else f" (or set {WEIGHTS_ENV})")
        ) from None
    try:
        ckpt = read_checkpoint(folder)
        # a float16 file (large-v3's) is kept float16: lossless, and half the memory and disk of
        # float32 while converting (float32 is made on loading, where the device runs it)
        half = all(value.dtype == np.float16 for value in ckpt.state.values())
        return save_checkpoint(ckpt, dst, dtype="float16" if half else "float32")
    except CheckpointError:
        # another process (a worker, a second server) converted the same model meanwhile
        if is_whisperms(dst):
            return dst
        raise
