"""whisperms: Whisper speech recognition on MindSpore."""
from pathlib import Path

from .decoding import DecodingOptions, DecodingResult, decode, detect_language
from .errors import AudioError, CheckpointError, OptionsError, OutputError, WhispermsError, WhispermsWarning
from .lazy import lazy_attributes
from .transcribe import Segment, TranscriptionInfo, TranscriptionResult, transcribe

__version__ = "0.1.0"
__all__ = ["load_model", "available_models", "transcribe", "decode", "detect_language", "DecodingOptions",
           "DecodingResult", "Segment", "TranscriptionInfo", "TranscriptionResult",
           "ModelDimensions", "Whisper", "WhispermsError", "AudioError", "CheckpointError", "OptionsError",
           "OutputError", "WhispermsWarning"]

# Imported on first use (lazy.py): these modules import MindSpore.
__getattr__, __dir__ = lazy_attributes(__name__, globals(), {"available_models": "hub", "ModelDimensions": "model",
                                                             "Whisper": "model"})


def load_model(name_or_path, device=None, dtype=None, download_root=None, attn_implementation="auto", threads=None,
               jit=True):
    """Load a model by name ("tiny.en", "base", ..., "large-v3-turbo") or from a whisperms, Hugging Face or
    CTranslate2 folder (the latter two converted in memory). Parameters load strictly, one-to-one. Returns a
    `whisperms.model.Whisper`.

    device: None (Ascend when MindSpore reports one, else CPU), "CPU" or "Ascend". dtype: None (float16 on Ascend,
    float32 on CPU), "float16" or "float32". attn_implementation: "auto" (flash_attention_2 on Ascend, eager
    elsewhere), "eager" or "flash_attention_2" (Ascend only). threads: CPU cores to use (None: all). jit=False runs
    everything eagerly (PyNative): much slower, the reference the compiled path is tested against. The choices are on
    `model.runtime`.
    """
    from . import device as devices
    from .convert import assign_state, read_checkpoint
    from .hub import resolve
    from .model import Whisper

    runtime = devices.select(device, dtype, attn_implementation, jit, threads)
    folder = resolve(name_or_path, download_root)
    checkpoint = read_checkpoint(folder)
    model = Whisper(checkpoint.dims)
    for param in model.get_parameters():  # assign_state writes each value in its parameter's dtype
        param.set_dtype(devices.DTYPES[runtime.dtype])
    assign_state(model, checkpoint.state)  # converts each tensor to its parameter's dtype
    model.set_train(False)
    model.name = checkpoint.name
    model.tokenizer_path = Path(checkpoint.tokenizer_path)
    model.alignment_heads = checkpoint.alignment_heads
    return devices.apply(model, runtime)
