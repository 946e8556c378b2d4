"""Model names -> checkpoints: a local `weights/NAME` folder first, else the Hugging Face hub, converted once.

The dimension table is openai's released configurations; the tests check parameter counts against it.
"""
import os
from pathlib import Path

from .errors import CheckpointError
from .model import ModelDimensions

WEIGHTS_ENV = "WHISPERMS_WEIGHTS"  # overrides where named models are looked up and cached

_TINY = dict(n_audio_state=384, n_audio_head=6, n_audio_layer=4, n_text_state=384, n_text_head=6, n_text_layer=4)
_BASE = dict(n_audio_state=512, n_audio_head=8, n_audio_layer=6, n_text_state=512, n_text_head=8, n_text_layer=6)
_SMALL = dict(n_audio_state=768, n_audio_head=12, n_audio_layer=12, n_text_state=768, n_text_head=12,
              n_text_layer=12)
_MEDIUM = dict(n_audio_state=1024, n_audio_head=16, n_audio_layer=24, n_text_state=1024, n_text_head=16,
               n_text_layer=24)
_LARGE = dict(n_audio_state=1280, n_audio_head=20, n_audio_layer=32, n_text_state=1280, n_text_head=20,
              n_text_layer=32)
_EN, _MULTI, _V3 = dict(n_mels=80, n_vocab=51864), dict(n_mels=80, n_vocab=51865), dict(n_mels=128, n_vocab=51866)


def _dims(size, vocab, **override):
    return ModelDimensions(n_audio_ctx=1500, n_text_ctx=448, **{**size, **vocab, **override})


RELEASED_DIMENSIONS = {
    "tiny.en": _dims(_TINY, _EN), "tiny": _dims(_TINY, _MULTI),
    "base.en": _dims(_BASE, _EN), "base": _dims(_BASE, _MULTI),
    "small.en": _dims(_SMALL, _EN), "small": _dims(_SMALL, _MULTI),
    "medium.en": _dims(_MEDIUM, _EN), "medium": _dims(_MEDIUM, _MULTI),
    "large-v1": _dims(_LARGE, _MULTI), "large-v2": _dims(_LARGE, _MULTI),
    "large-v3": _dims(_LARGE, _V3), "large-v3-turbo": _dims(_LARGE, _V3, n_text_layer=4),
}
ALIASES = {"large": "large-v3", "turbo": "large-v3-turbo"}
HF_REPOS = {name: f"openai/whisper-{'large' if name == 'large-v1' else name}" for name in RELEASED_DIMENSIONS}


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
        raise CheckpointError(f"'{name_or_path}' is neither a checkpoint folder nor a model name "
                              f"(known: {', '.join(available_models())})")
    root = Path(download_root).expanduser() if download_root else weights_root()
    local = root / name
    if local.is_dir():
        return local
    return _download(name, local)


def _download(name, dst: Path) -> Path:
    from .convert import convert
    try:
        from huggingface_hub import snapshot_download
        folder = snapshot_download(HF_REPOS[name], allow_patterns=["*.json", "*.safetensors", "*.txt"])
    except Exception as error:  # offline, hub unreachable, or repo missing: all end the same way for the user
        raise CheckpointError(
            f"model '{name}' is not in {dst.parent} and could not be downloaded from the Hugging Face hub "
            f"({type(error).__name__}); put a whisperms, Hugging Face or CTranslate2 folder at {dst} "
            f"(or set {WEIGHTS_ENV})") from None
    return convert(folder, dst)
