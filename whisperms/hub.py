"""Model names -> checkpoints: a local `weights/NAME` folder first, else the Hugging Face hub,
converted once.

The released models' dimensions live in convert.py (RELEASED_DIMENSIONS, imported here): convert
names a checkpoint by them, and hub.py already depends on convert, so the table sits on the side
nothing imports back.
"""

import os
from pathlib import Path

from .convert import RELEASED_DIMENSIONS, convert, is_whisperms
from .errors import CheckpointError

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
    """`$WHISPERMS_WEIGHTS`, else the repository's `weights/` folder, else ~/.cache/whisperms."""
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV]).expanduser()
    repo_weights = Path(__file__).resolve().parent.parent / "weights"
    if repo_weights.is_dir():
        return repo_weights
    return Path.home() / ".cache" / "whisperms"


def resolve(name_or_path, download_root=None) -> Path:
    """A checkpoint folder for a path or a model name; downloads and converts a named model once."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    name = ALIASES.get(str(name_or_path), str(name_or_path))
    if name not in RELEASED_DIMENSIONS:
        raise CheckpointError(
            f"'{name_or_path}' is neither a checkpoint folder nor a model name "
            f"(known: {', '.join(available_models())})"
        )
    root = Path(download_root).expanduser() if download_root else weights_root()
    local = root / name
    if local.is_dir():
        return local
    return _download(name, local)


def _download(name, dst: Path) -> Path:
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(HF_REPOS[name], allow_patterns=HUB_FILES)
    # offline, hub unreachable, or repo missing: all end the same way for the user
    except Exception as error:
        raise CheckpointError(
            f"model '{name}' is not in {dst.parent} and could not be downloaded from the Hugging "
            "Face hub "
            f"({type(error).__name__}); put a whisperms, Hugging Face or CTranslate2 folder at "
            f"{dst} "
            f"(or set {WEIGHTS_ENV})"
        ) from None
    try:
        return convert(folder, dst)
    except CheckpointError:
        # another process (a worker, a second server) converted the same model meanwhile
        if is_whisperms(dst):
            return dst
        raise
