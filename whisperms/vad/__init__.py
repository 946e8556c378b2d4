"""Voice activity detection: Silero VAD v6 (16 kHz) in MindSpore, with faster-whisper's options and
semantics.

    speech, chunks = collect_speech(audio, vad_parameters)   # the speech joined; chunks: [{"start",
    "end"}] samples segments = restore_speech_timestamps(transcribe_segments(speech), chunks)  #
    times back on the original timeline

model.py: the network; weights.py: the shipped weights; convert.py: the ONNX converter; runner.py:
the compiled run over a file; options.py: VadOptions; timestamps.py: everything after the
probabilities.
"""

import numpy as np

from ..errors import AudioError
from ..lazy import lazy_attributes
from .options import OPTION_NAMES, VadOptions, parse_vad_parameters
from .options import vad_options as _vad_options

__all__ = [
    "OPTION_NAMES",
    "SileroVADModel",
    "SpeechTimestampsMap",
    "VadOptions",
    "collect_chunks",
    "collect_speech",
    "get_speech_timestamps",
    "get_vad_model",
    "parse_vad_parameters",
    "restore_speech_timestamps",
    "speech_probabilities",
    "vad_options",
]

vad_options = _vad_options

# runner.py and timestamps.py import MindSpore (through model.py): they are imported on first use,
# so that the options can be checked without it (the CLI checks --vad_parameters before MindSpore is
# imported).
__getattr__, __dir__ = lazy_attributes(
    __name__,
    globals(),
    {
        "SileroVADModel": "runner",
        "get_vad_model": "runner",
        "SpeechTimestampsMap": "timestamps",
        "collect_chunks": "timestamps",
        "restore_speech_timestamps": "timestamps",
        "speech_timestamps": "timestamps",
    },
)


def _mono(audio) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise AudioError(f"VAD needs mono 16-kHz audio as a 1-D array, got shape {audio.shape}")
    return audio


def speech_probabilities(audio) -> np.ndarray:
    """One speech probability per 512 samples of 16-kHz mono `audio` (len(audio) // 512 + 1 of them,
    as faster-whisper computes them)."""
    from .runner import get_vad_model

    return get_vad_model()(_mono(audio))


def get_speech_timestamps(audio, vad_options=None, **kwargs) -> list:
    """Speech segments [{"start": sample, "end": sample}, ...] of 16-kHz mono `audio`.

    `vad_options`: None, a VadOptions or a dict of its fields; keyword arguments (VadOptions fields)
    are folded in. Same result as faster_whisper.vad.get_speech_timestamps for the same options.
    """
    from .runner import get_vad_model
    from .timestamps import speech_timestamps

    options = _vad_options(vad_options, **kwargs)
    audio = _mono(audio)
    return speech_timestamps(get_vad_model()(audio), len(audio), options)


def collect_speech(audio, vad_parameters=None):
    """faster-whisper's sequential `vad_filter`: (the speech of `audio` joined into one float32
    array, the speech chunks [{"start": sample, "end": sample}, ...] to give
    `restore_speech_timestamps`). No speech: an empty array and no chunks. `vad_parameters`: None, a
    VadOptions, a dict of its fields or a string (parse_vad_parameters)."""
    from .timestamps import collect_chunks

    audio = _mono(audio)
    chunks = get_speech_timestamps(audio, _vad_options(vad_parameters))
    pieces, _ = collect_chunks(audio, chunks)
    return pieces[0], chunks
