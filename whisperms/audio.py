"""Audio front end: decode to 16 kHz mono float32 and compute Whisper's log-mel spectrogram.

Names and recipe follow openai/whisper `whisper/audio.py`, so the encoder sees the features it was
trained on. The STFT is NumPy (no torch), FFT'd in float64 (numpy<2's pocketfft computes in float64
anyway: a float32 FFT drifts further from a float64 reference for little gain) and projected onto
the mel bank in float32 like openai. What `load_audio` accepts, and what it makes of it, is in its
docstring.
"""

import io
import numbers
import os
from functools import lru_cache
from typing import Tuple

import numpy as np

from .audio_files import (
    MIN_SAMPLE_RATE,
    AudioSource,
    check_audio_file,
    content_source,
    decode_file,
    is_content,
)
from .errors import AudioError, warn

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30-second window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a window
N_SAMPLES_PER_TOKEN = HOP_LENGTH * 2  # the encoder's stride-2 conv halves the frame rate
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames: 10 ms each
TOKENS_PER_SECOND = SAMPLE_RATE // N_SAMPLES_PER_TOKEN  # 50 audio positions: 20 ms each

# torch.hann_window's default (periodic=True): the window of length N_FFT + 1 without its last
# sample.
_WINDOW = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
# Frames processed per FFT batch: bounds temporaries to a 30-s window's worth whatever the input
# length.
_FRAMES_PER_BATCH = N_FRAMES
# A float array peaking above this is far beyond full scale (1.0): int16 PCM cast to float and not
# scaled, most often, which the model hears as noise; warned of, as arrays are taken as they are.
LOUD_PEAK = 8.0
MAX_CHANNELS = 8  # a 2-D array with both axes longer is not audio (a mel spectrogram, say): refused
_PCM_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}
# |sample| above this could overflow the float32 power spectrum (to inf, then NaN where the mel bank
# is 0): clipped.
_SAMPLE_LIMIT = 1e16


def load_audio(file, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decode any file to mono float32 at `sr` Hz; an array is taken as already decoded.

    What it (and so `transcribe`) takes, and what it makes of it:
    - a path (str, bytes or os.PathLike) to a regular, readable file: decoded, channels averaged,
      resampled to 16 kHz, clipped to full scale (+-1.0) as 16-bit decoders deliver it.
      A missing file, a folder, an unreadable file and an undecodable one are each an AudioError
      that says which.
    - a file's content: a binary file object (read from where it stands, as faster-whisper takes
      one: open(path, "rb"), io.BytesIO), or the bytes themselves (bytes that cannot be a path:
      empty, longer than PATH_MAX_BYTES, or holding a NUL, as every WAV header does; a bytearray,
      a memoryview of bytes), decoded as the file would be (ffmpeg gets a temporary copy).
    - a WAV file whose header declares no samples where samples follow (a recorder stopped before
      it closed the file): the samples after the header, with a WhispermsWarning, as ffmpeg reads
      them.
    - an array of samples at 16 kHz (nothing can check the rate: resample first): float32 or float64
      (float16 too)
      taken as they are, full scale +-1.0; int16 and int32 PCM scaled by 2**15 and 2**31; any other
      dtype (int8, uint8, int64, bool, complex, strings, objects) is an AudioError. Shape (N,) is
      mono; a 2-D array is (samples, channels), as soundfile.read returns it, or (channels,
      samples), as librosa and torchaudio do: the shorter axis is taken as the channels (at most
      MAX_CHANNELS) and averaged, as files are. 0-D and 3-D or more are an AudioError, and so is a
      list or tuple of clips. An empty array is valid: it transcribes to no segments. A float array
      peaking above LOUD_PEAK is taken as it is, with a WhispermsWarning.
    - non-finite samples (NaN, +-inf) in a file or an array are set to 0 with a WhispermsWarning
      that counts them:
      a few bad samples would otherwise make the whole log-mel NaN (its max is NaN). Neither
      openai-whisper nor faster-whisper checks; a dropout of a few samples costs nothing audible,
      refusing the file would lose it all.

    libsndfile (via soundfile) decodes wav/flac/ogg/opus/mp3 in-process, so results do not depend on
    whether ffmpeg is installed; other containers (m4a, mp4, webm, ...) go through the ffmpeg binary
    when it is on PATH. Channels are averaged (as ffmpeg's `-ac 1` does) and resampled with soxr
    "HQ" (librosa's default resampler); openai resamples with ffmpeg's swresample, so samples match
    openai closely but not exactly.
    """
    content = is_content(file)
    if not (content or hasattr(file, "read") or isinstance(file, (str, bytes, os.PathLike))):
        return as_waveform(file)
    if not isinstance(sr, numbers.Integral) or sr < MIN_SAMPLE_RATE:
        raise AudioError(f"sr must be a whole number of Hz, at least {MIN_SAMPLE_RATE}, got {sr!r}")
    if content:
        source = content_source(file, "the audio bytes given")
    elif hasattr(file, "read"):  # a file object, as faster-whisper takes one
        name, named = _object_name(file)  # before the read moves it
        source = content_source(_read_object(file, name), name, named)
    else:  # bytes: a path as the OS gives it
        path = check_audio_file(os.fsdecode(file) if isinstance(file, bytes) else file)
        source = AudioSource(path, path=path)
    decoded = decode_file(source, sr)  # at `sr`, resampled as it was read
    if decoded.problem:  # told here: the decoder's output is hidden while it reads
        warn(f"{source.name}: {decoded.problem}")
    if decoded.not_finite:
        _warn_not_finite(source.name, decoded.not_finite, decoded.read)
    audio = np.ascontiguousarray(decoded.samples, dtype=np.float32)
    # full scale, as openai's and faster-whisper's decoders deliver it (16-bit PCM): a float file
    # louder than that would otherwise be transcribed as noise
    return np.clip(audio, -1.0, 1.0, out=audio)


def _read_object(file, name: str) -> bytes:
    """What a file object holds from where it stands (as faster-whisper reads one); an AudioError
    for one opened as text or that fails to read."""
    if isinstance(file, io.TextIOBase):
        raise AudioError(f"{name} is open as text: open it in binary mode ('rb')")
    try:
        content = file.read()
    except (OSError, ValueError) as error:  # closed, or not readable
        raise AudioError(f"cannot read {name}: {error}") from None
    if not isinstance(content, (bytes, bytearray, memoryview)):
        raise AudioError(
            f"{name} reads {type(content).__name__}, not bytes: open the file in binary mode ('rb')"
        )
    return content


def _object_name(file) -> Tuple[str, bool]:
    """(the file object's name, and where it stood when it is not at its start: what follows that
    point alone is read; whether that name is the file's)."""
    name = getattr(file, "name", None)
    named = isinstance(name, (str, bytes))
    name = os.fsdecode(name) if named else "the file object given"
    try:
        position = file.tell()
    except (AttributeError, OSError, ValueError):  # a pipe, or closed
        position = 0
    return (f"{name} (from byte {position})" if position else name), named


def as_waveform(audio, source: str = "audio array") -> np.ndarray:
    """An array of samples as mono float32 (load_audio's docstring says what is taken and how)."""
    if audio is None or (isinstance(audio, numbers.Number) and not isinstance(audio, np.generic)):
        # not an array of 0 dimensions, nor "dtype object": a mistaken argument, said as one
        what = "None" if audio is None else f"of type {type(audio).__name__}"
        raise AudioError(
            f"audio is {what}: pass a path, a file's content (bytes, a binary file object) or an "
            "array of samples"
        )
    if isinstance(audio, dict):  # a datasets row: {"array": ..., "sampling_rate": ...}
        hint = ": pass its 'array', at 16 kHz" if "array" in audio else ""
        raise AudioError(f"{source} is a dict{hint}")
    if (
        isinstance(audio, tuple)
        and len(audio) == 2
        and getattr(audio[0], "ndim", 0) >= 1
        and isinstance(audio[1], numbers.Number)
    ):  # what soundfile.read, librosa.load and torchaudio.load return
        raise AudioError(
            f"{source} is a (samples, sample rate) pair: pass the samples alone, at 16 kHz"
        )
    if isinstance(audio, (list, tuple)) and audio and getattr(audio[0], "ndim", 0) >= 1:
        # np.asarray stacks them as channels, averaged into one signal of both clips; openai's
        # and faster-whisper's transcribe refuse a list (a list of frames, [[left, right], ...],
        # is (samples, channels) as before)
        raise AudioError(
            f"{source} is a {type(audio).__name__} of {len(audio)} clips: pass one clip per call "
            "(several files share batches through BatchedTranscriber), or channels as one array"
        )
    try:
        array = np.asarray(audio)
    # ragged nested lists, objects without an array form; a RuntimeError is torch's for a tensor
    # that requires grad ("Can't call numpy() on Tensor that requires grad")
    except (TypeError, ValueError, RuntimeError) as error:
        raise AudioError(
            f"{source} is not an array of samples: {str(error).splitlines()[0]}"
        ) from None
    native = array.dtype.newbyteorder("=")  # big-endian PCM is PCM too
    if array.dtype.kind == "f":
        waveform = _as_float32(array)
    elif native in _PCM_SCALE:
        waveform = (array / _PCM_SCALE[native]).astype(np.float32)
    elif array.dtype.kind in "SU":
        raise AudioError(
            f"{source} holds strings, not samples: pass one path (str or os.PathLike) per input, "
            "or an array of samples"
        )
    else:
        raise AudioError(
            f"{source} has dtype {array.dtype}: pass float32 or float64 samples (full scale 1.0), "
            "or "
            "int16 or int32 PCM, at 16 kHz"
        )
    if waveform.ndim == 2:
        channel_axis = 0 if waveform.shape[0] < waveform.shape[1] else 1
        if waveform.shape[channel_axis] > MAX_CHANNELS:
            raise AudioError(
                f"{source} of shape {waveform.shape} is not (samples, channels) or (channels, "
                "samples) "
                f"with at most {MAX_CHANNELS} channels"
            )
        waveform = (
            waveform.mean(axis=channel_axis, dtype=np.float32)
            if waveform.shape[channel_axis] > 1
            else waveform.reshape(-1)
        )
    elif waveform.ndim != 1:
        raise AudioError(
            f"{source} has {waveform.ndim} dimensions, shape {waveform.shape}: pass (samples,) "
            "mono, or "
            "(samples, channels) / (channels, samples)"
        )
    waveform = _finite(waveform, source)
    if array.dtype.kind == "f" and waveform.size:
        peak = max(float(waveform.max()), -float(waveform.min()))  # no temporary array
        if peak > LOUD_PEAK:
            warn(
                f"{source}: samples reach {peak:.4g}, where full scale is 1.0 (int16 PCM not "
                "divided by 32768?); transcribed as given"
            )
    return waveform


def _as_float32(array: np.ndarray) -> np.ndarray:
    """Float samples as float32; finite values beyond float32's range (float64 can hold them) are
    set to +-_SAMPLE_LIMIT, as the mel frontend clips them, not made infinite by the cast."""
    if array.dtype.itemsize <= 4:
        return array.astype(np.float32, copy=False)
    with np.errstate(over="ignore"):
        waveform = array.astype(np.float32)
    huge = np.isinf(waveform) & np.isfinite(array)
    if huge.any():
        waveform[huge] = np.sign(array[huge]) * _SAMPLE_LIMIT
    return waveform


def _finite(audio: np.ndarray, source: str) -> np.ndarray:
    """`audio` with NaN and +-inf samples set to 0 (a copy, with a warning), or `audio` itself if
    all are finite."""
    with np.errstate(invalid="ignore"):  # inf + -inf
        total = audio.sum(dtype=np.float64)
    if np.isfinite(total):  # float32 values cannot overflow a float64 sum: exact, and no copy
        return audio
    bad = ~np.isfinite(audio)
    _warn_not_finite(source, np.count_nonzero(bad), audio.size)
    return np.where(bad, np.float32(0), audio).astype(np.float32, copy=False)


def _warn_not_finite(source: str, bad: int, total: int):
    warn(f"{source}: {bad} of {total} samples are not finite (NaN or infinity) and were set to 0")


def pad_or_trim(array, length: int = N_SAMPLES, *, axis: int = -1):
    """Zero-pad or cut `axis` to `length`, the fixed window the encoder was trained on (ndarray or
    MindSpore Tensor)."""
    if (
        isinstance(length, (bool, np.bool_))
        or not isinstance(length, numbers.Integral)
        or length < 0
    ):
        raise ValueError(f"pad_or_trim's length must be a whole number >= 0, got {length!r}")
    ndim = len(array.shape) if hasattr(array, "shape") else np.ndim(array)
    if not isinstance(axis, numbers.Integral) or not -ndim <= axis < ndim:
        raise ValueError(f"pad_or_trim's axis {axis!r} is not an axis of a {ndim}-D array")
    if not isinstance(array, np.ndarray) and type(array).__module__.startswith("mindspore"):
        n = array.shape[axis]
        from mindspore import ops

        if n > length:
            array = array.narrow(axis, 0, length)
        elif n < length:
            shape = list(array.shape)
            shape[axis] = length - n
            array = ops.cat((array, ops.zeros(tuple(shape), array.dtype)), axis)
        return array
    array = np.asarray(array)
    n = array.shape[axis]
    if n > length:
        array = array.take(np.arange(length), axis=axis)
    elif n < length:
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, length - n)
        array = np.pad(array, widths)
    return array


@lru_cache(maxsize=None)
def mel_filters(n_mels: int) -> np.ndarray:
    """Slaney mel bank, exactly how openai generated `mel_filters.npz` (librosa.filters.mel
    defaults); 80 or 128 bins.

    Written out (same float64/float32 steps as librosa) rather than imported: importing librosa is a
    large share of a cold start. tests/test_audio.py checks it equals librosa's.
    """
    if n_mels not in (80, 128):
        raise ValueError(f"unsupported n_mels {n_mels!r}: Whisper models use 80 or 128 mel bins")
    fft_freqs = np.fft.rfftfreq(n=N_FFT, d=1.0 / SAMPLE_RATE)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    filters = np.zeros((n_mels, len(fft_freqs)), np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        filters[i] = np.maximum(0, np.minimum(lower, upper))
    filters *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    filters.setflags(write=False)  # shared through the cache
    return filters


# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_MEL_F_SP = 200.0 / 3
_MEL_MIN_LOG_HZ = 1000.0
_MEL_MIN_LOG_MEL = _MEL_MIN_LOG_HZ / _MEL_F_SP
_MEL_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(freq):
    if freq >= _MEL_MIN_LOG_HZ:
        return _MEL_MIN_LOG_MEL + np.log(freq / _MEL_MIN_LOG_HZ) / _MEL_LOGSTEP
    return freq / _MEL_F_SP


def _mel_to_hz(mels):
    freqs = _MEL_F_SP * mels
    log_t = mels >= _MEL_MIN_LOG_MEL
    freqs[log_t] = _MEL_MIN_LOG_HZ * np.exp(_MEL_LOGSTEP * (mels[log_t] - _MEL_MIN_LOG_MEL))
    return freqs


def log_mel_spectrogram(audio, n_mels: int = 80, padding: int = 0) -> np.ndarray:
    """Whisper's log-mel features, (n_mels, (len(audio) + padding) // HOP_LENGTH) float32.

    openai's recipe: centered STFT (reflect pad N_FFT // 2), periodic Hann, |X|^2 with the last
    frame dropped, mel projection, log10 floored at 1e-10 and at (global max - 8), then (x + 4) / 4.
    The last frame is simply never computed. `padding` zeros are appended first (transcribe passes
    N_SAMPLES so the tail gets a full window). `audio` is a path or an array as `load_audio` takes
    it; samples beyond +-1e16 (corrupt, not audio) are clipped there, so the features are always
    finite.
    """
    if isinstance(audio, np.ndarray) and audio.dtype == np.float32 and audio.ndim == 1:
        # a waveform already (transcribe's, a piece of it): what the features need checked
        audio = _finite(audio, "audio array")
    else:
        audio = load_audio(audio)  # a path decoded, an array checked (as_waveform)
    peak = max(float(audio.max()), -float(audio.min())) if audio.size else 0.0
    if peak > _SAMPLE_LIMIT:
        audio = np.clip(audio, -_SAMPLE_LIMIT, _SAMPLE_LIMIT)
    filters = mel_filters(n_mels)
    n_frames = (len(audio) + max(padding, 0)) // HOP_LENGTH
    if n_frames == 0:
        return np.zeros((n_mels, 0), np.float32)

    x = _reflect_padded(audio, max(padding, 0))
    step = x.strides[0]
    out = np.empty((n_mels, n_frames), np.float32)
    for start in range(0, n_frames, _FRAMES_PER_BATCH):
        stop = min(start + _FRAMES_PER_BATCH, n_frames)
        frames = np.lib.stride_tricks.as_strided(
            x[start * HOP_LENGTH :],
            (stop - start, N_FFT),
            (step * HOP_LENGTH, step),
            writeable=False,
        )
        power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1))
        power *= power
        np.matmul(filters, power.astype(np.float32).T, out=out[:, start:stop])

    np.maximum(out, 1e-10, out=out)
    np.log10(out, out=out)
    np.maximum(out, out.max() - 8.0, out=out)
    out += 4.0
    out /= 4.0
    return out


def _reflect_padded(audio: np.ndarray, padding: int) -> np.ndarray:
    """`audio` and `padding` zeros, reflect-padded by N_FFT // 2 on each side (the centered STFT's
    input), built in one buffer: the same values as np.pad(np.concatenate(...), mode="reflect")
    without a second copy of an input that may be hours long."""
    edge = N_FFT // 2
    n = len(audio) + padding
    x = np.empty(n + 2 * edge, np.float32)
    body = x[edge : edge + n]
    body[: len(audio)] = audio
    body[len(audio) :] = 0.0
    # a reflection repeats no edge sample; a signal shorter than the reflection is reflected
    # back and forth, as np.pad does it: that rare case takes np.pad itself
    if n <= edge:
        return np.pad(body, edge, mode="reflect")
    x[:edge] = body[1 : edge + 1][::-1]
    x[edge + n :] = body[n - 1 - edge : n - 1][::-1]
    return x
