"""whisperms: Whisper speech recognition on MindSpore."""

from .audio import load_audio, log_mel_spectrogram, pad_or_trim
from .decoding import DecodingOptions, DecodingResult, decode, detect_language
from .errors import (
    AudioError,
    CheckpointError,
    OptionsError,
    OutputError,
    WhispermsError,
    WhispermsWarning,
)
from .lazy import lazy_attributes
from .transcribe import Segment, TranscriptionInfo, TranscriptionResult, transcribe

__version__ = "0.1.0"
__all__ = [
    "load_model",
    "available_models",
    "transcribe",
    "decode",
    "detect_language",
    "load_audio",
    "log_mel_spectrogram",
    "pad_or_trim",
    "DecodingOptions",
    "DecodingResult",
    "Segment",
    "TranscriptionInfo",
    "TranscriptionResult",
    "ModelDimensions",
    "Whisper",
    "WhispermsError",
    "AudioError",
    "CheckpointError",
    "OptionsError",
    "OutputError",
    "WhispermsWarning",
]

# Imported on first use (lazy.py): these modules import MindSpore.
__getattr__, __dir__ = lazy_attributes(
    __name__,
    globals(),
    {
        "available_models": "hub",
        "ModelDimensions": "model",
        "Whisper": "model",
        "load_model": "loading",
    },
)
