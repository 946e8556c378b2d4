"""Voice activity detection: Silero VAD v6 (16 kHz) in MindSpore, with faster-whisper's options and semantics.

    from whisperms.vad import get_speech_timestamps, collect_chunks, restore_speech_timestamps
    chunks = get_speech_timestamps(audio)                 # [{"start": sample, "end": sample}, ...]
    pieces, metadata = collect_chunks(audio, chunks)      # one piece: the speech joined
    segments = restore_speech_timestamps(segments_of(pieces[0]), chunks)   # back on the original timeline

model.py holds the network, weights.py the shipped weight file, convert.py the ONNX converter, runner.py the
compiled run over a file, options.py VadOptions, timestamps.py everything after the probabilities.
"""
import numpy as np

from ..errors import AudioError
from .options import OPTION_NAMES, VadOptions, parse_vad_parameters, vad_options as _vad_options
from .runner import SileroVADModel, get_vad_model
from .timestamps import SpeechTimestampsMap, collect_chunks, restore_speech_timestamps, speech_timestamps

__all__ = ["VadOptions", "vad_options", "parse_vad_parameters", "get_speech_timestamps", "speech_probabilities",
           "collect_chunks", "SpeechTimestampsMap", "restore_speech_timestamps", "SileroVADModel", "get_vad_model",
           "OPTION_NAMES"]

vad_options = _vad_options


def _mono(audio) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise AudioError(f"VAD needs mono 16-kHz audio as a 1-D array, got shape {audio.shape}")
    return audio


def speech_probabilities(audio) -> np.ndarray:
    """One speech probability per 512 samples of 16-kHz mono `audio` (len(audio) // 512 + 1 of them, as
    faster-whisper computes them)."""
    return get_vad_model()(_mono(audio))


def get_speech_timestamps(audio, vad_options=None, **kwargs) -> list:
    """Speech segments [{"start": sample, "end": sample}, ...] of 16-kHz mono `audio`.

    `vad_options`: None, a VadOptions or a dict of its fields; keyword arguments (VadOptions fields) are folded in.
    Same result as faster_whisper.vad.get_speech_timestamps for the same options.
    """
    options = _vad_options(vad_options, **kwargs)
    audio = _mono(audio)
    return speech_timestamps(get_vad_model()(audio), len(audio), options)
