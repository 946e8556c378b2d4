"""openai's released model configurations, once: hub.py names and downloads them, convert.py names
a checkpoint by them (model_name)."""

from dataclasses import replace

from .model import ModelDimensions

_TINY = dict(
    n_audio_state=384,
    n_audio_head=6,
    n_audio_layer=4,
    n_text_state=384,
    n_text_head=6,
    n_text_layer=4,
)
_BASE = dict(
    n_audio_state=512,
    n_audio_head=8,
    n_audio_layer=6,
    n_text_state=512,
    n_text_head=8,
    n_text_layer=6,
)
_SMALL = dict(
    n_audio_state=768,
    n_audio_head=12,
    n_audio_layer=12,
    n_text_state=768,
    n_text_head=12,
    n_text_layer=12,
)
_MEDIUM = dict(
    n_audio_state=1024,
    n_audio_head=16,
    n_audio_layer=24,
    n_text_state=1024,
    n_text_head=16,
    n_text_layer=24,
)
_LARGE = dict(
    n_audio_state=1280,
    n_audio_head=20,
    n_audio_layer=32,
    n_text_state=1280,
    n_text_head=20,
    n_text_layer=32,
)
_EN, _MULTI, _V3 = (
    dict(n_mels=80, n_vocab=51864),
    dict(n_mels=80, n_vocab=51865),
    dict(n_mels=128, n_vocab=51866),
)


def _dims(size, vocab, **override):
    return ModelDimensions(n_audio_ctx=1500, n_text_ctx=448, **{**size, **vocab, **override})


RELEASED_DIMENSIONS = {
    "tiny.en": _dims(_TINY, _EN),
    "tiny": _dims(_TINY, _MULTI),
    "base.en": _dims(_BASE, _EN),
    "base": _dims(_BASE, _MULTI),
    "small.en": _dims(_SMALL, _EN),
    "small": _dims(_SMALL, _MULTI),
    "medium.en": _dims(_MEDIUM, _EN),
    "medium": _dims(_MEDIUM, _MULTI),
    "large-v1": _dims(_LARGE, _MULTI),
    "large-v2": _dims(_LARGE, _MULTI),
    "large-v3": _dims(_LARGE, _V3),
    "large-v3-turbo": _dims(_LARGE, _V3, n_text_layer=4),
}


def model_name(dims: ModelDimensions):
    """openai's model name for these dims ("tiny.en", "large-v3-turbo", ...), or None if they match
    no release.

    large-v1 and large-v2 have the same dims: reported as "large-v2". A release's encoder under a
    shallower decoder is a distilled model ("distil-large-v3"); large-v3-turbo is itself a release,
    not a distillation base.
    """
    released = {name: d for name, d in RELEASED_DIMENSIONS.items() if name != "large-v1"}
    for name, candidate in released.items():
        if candidate == dims:
            return name
    for name, candidate in released.items():
        if name != "large-v3-turbo" and replace(candidate, n_text_layer=dims.n_text_layer) == dims:
            return "distil-" + name
    return None
