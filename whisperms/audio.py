"""Audio front end: decode to 16 kHz mono float32 and compute Whisper's log-mel spectrogram.

Names and recipe follow openai/whisper `whisper/audio.py`, so the encoder sees the features it was
trained on. The STFT is NumPy (no torch), FFT'd in float64 (numpy<2's pocketfft computes in float64
anyway: a float32 FFT drifts further from a float64 reference for little gain) and projected onto
the mel bank in float32 like openai. What `load_audio` accepts, and what it makes of it, is in its
docstring.
"""

import numbers
import os
import shutil
import stat
import subprocess
import sys
import warnings
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import soundfile
import soxr

from .errors import AudioError, WhispermsWarning

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30-second window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a window
N_SAMPLES_PER_TOKEN = HOP_LENGTH * 2  # the encoder's stride-2 conv halves the frame rate
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames: 10 ms each
TOKENS_PER_SECOND = SAMPLE_RATE // N_SAMPLES_PER_TOKEN  # 50 audio positions: 20 ms each

# Extensions libsndfile (>= 1.1 with mpg123 and opus) decodes itself; anything else needs ffmpeg.
_SOUNDFILE_EXTENSIONS = {
    ".wav",
    ".wave",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aif",
    ".aiff",
    ".au",
    ".caf",
    ".w64",
}
# torch.hann_window's default (periodic=True): the window of length N_FFT + 1 without its last
# sample.
_WINDOW = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
# Frames processed per FFT batch: bounds temporaries to a 30-s window's worth whatever the input
# length.
_FRAMES_PER_BATCH = N_FRAMES
# The longest input a file may decode to: 24 hours at 16 kHz are 5.5 GB of float32, and a file whose
# samples would make more (a day of audio, or a short file declaring a sample rate of a few Hz) is
# refused in one line instead of exhausting the memory.
MAX_AUDIO_HOURS = 24
# A file declaring a lower sample rate is not audio (its header lies, or it holds other data):
# refused, as resampling its samples to 16 kHz would make hours of them from a few kilobytes.
MIN_SAMPLE_RATE = 1000
_READ_BLOCK_FRAMES = 1 << 20  # frames per read of a file (load_audio)
# Frames per read past a point where a block failed to decode: a file damaged or cut short is
# read up to the damage, as truncated WAV and MP3 files are.
_SALVAGE_FRAMES = 1 << 12
# Bytes per sample of the uncompressed encodings, whose declared length the file's size can vouch
# for.
_SAMPLE_BYTES = {
    "PCM_S8": 1,
    "PCM_U8": 1,
    "ULAW": 1,
    "ALAW": 1,
    "PCM_16": 2,
    "PCM_24": 3,
    "PCM_32": 4,
    "FLOAT": 4,
    "DOUBLE": 8,
}
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
    - an array of samples at 16 kHz (nothing can check the rate: resample first): float32 or float64
      (float16 too)
      taken as they are, full scale +-1.0; int16 and int32 PCM scaled by 2**15 and 2**31; any other
      dtype (int8, uint8, int64, bool, complex, strings, objects) is an AudioError. Shape (N,) is
      mono; a 2-D array is (samples, channels), as soundfile.read returns it, or (channels,
      samples), as librosa and torchaudio do: the shorter axis is taken as the channels (at most
      MAX_CHANNELS) and averaged, as files are. 0-D and 3-D or more are an AudioError. An empty
      array is valid: it transcribes to no segments.
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
    if isinstance(file, bytes):  # a path as the OS gives it
        file = os.fsdecode(file)
    if not isinstance(file, (str, os.PathLike)):
        return as_waveform(file)
    if not isinstance(sr, numbers.Integral) or sr < MIN_SAMPLE_RATE:
        raise AudioError(f"sr must be a sample rate of at least {MIN_SAMPLE_RATE} Hz, got {sr!r}")
    path = check_audio_file(file)
    try:
        with _decoder_output_hidden():
            audio, rate, cut = _read_mono(path)
    # soundfile.LibsndfileError; its text can be misleading ("file does not exist")
    except RuntimeError:
        if os.path.getsize(path) == 0:  # a failed download or copy: say so, not "corrupted"
            raise AudioError(f"could not decode audio file {path}: the file is empty") from None
        if shutil.which("ffmpeg"):
            return _load_with_ffmpeg(path, sr)
        ext = os.path.splitext(path)[1].lower()
        if ext and ext not in _SOUNDFILE_EXTENSIONS:
            raise AudioError(
                f"cannot decode {path}: {ext} files need ffmpeg, which is not on PATH"
            ) from None
        raise AudioError(
            f"could not decode audio file {path}: not a supported audio format, or corrupted"
        ) from None
    if cut:  # told here: the decoder's output is hidden while it reads
        warnings.warn(
            f"{path}: the audio stops decoding after {len(audio) / rate:.1f} s (the file is "
            "damaged or cut short); transcribing what was read",
            WhispermsWarning,
            stacklevel=2,
        )
    audio = _finite(audio, path)
    if rate != sr and len(audio):
        audio = soxr.resample(audio, rate, sr, quality="HQ")
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    # full scale, as openai's and faster-whisper's decoders deliver it (16-bit PCM): a float file
    # louder than that would otherwise be transcribed as noise
    return np.clip(audio, -1.0, 1.0, out=audio)


def _read_mono(path: str):
    """(mono float32 samples, their rate, cut) of a file libsndfile decodes, read a block at a
    time: a header may claim any length, so a file of more than MAX_AUDIO_HOURS is an AudioError
    before it fills the memory. A file that stops decoding part way (damaged, or cut short: a FLAC
    stream loses sync) gives the audio before that, and `cut` True; one with none is the decoder's
    error."""
    # as bytes: a name that is not UTF-8 (undecodable bytes kept as surrogates) fails to encode
    name = os.fsencode(path)
    with soundfile.SoundFile(name) as f:
        rate = f.samplerate
        if rate < MIN_SAMPLE_RATE:
            raise AudioError(
                f"{path} declares a sample rate of {rate} Hz, below the {MIN_SAMPLE_RATE} Hz of "
                "any audio: not an audio file, or its header is damaged"
            )
        samples = _Samples(f.frames, int(MAX_AUDIO_HOURS * 3600 * rate), path, rate)
        # a length the file's size vouches for (uncompressed samples) is refused before hours of
        # reading; a compressed stream's declared length may lie, and is read as far as it goes
        width = _SAMPLE_BYTES.get(f.subtype)
        if (
            width is not None
            and samples.limit < f.frames
            and f.frames * f.channels * width <= os.path.getsize(path)
        ):
            samples.refuse()
        failure = _read_into(f, samples, _READ_BLOCK_FRAMES)
        if failure is None:
            return samples.array(), rate, False
        try:  # the failed block again, in small reads, up to where it fails
            f.seek(samples.total)
            reread = f
        except RuntimeError:  # a decoder that lost sync may not seek at all
            reread = None
        if reread is not None:
            failure = _read_into(f, samples, _SALVAGE_FRAMES)
    if reread is None:
        # a fresh decoder, read up to the good frames (they decoded before), then in small reads
        with soundfile.SoundFile(name) as f:
            _skip(f, samples.total)
            failure = _read_into(f, samples, _SALVAGE_FRAMES)
    if failure is not None and not samples.total:
        raise failure
    return samples.array(), rate, failure is not None


class _Samples:
    """A file's mono samples as they are read, in one buffer of the length its header declares
    (pages never written are never touched, so a header claiming too much costs no memory), grown
    if the file holds more."""

    def __init__(self, declared: int, limit: int, path: str, rate: int):
        self.buffer = np.empty(min(max(declared, 0), limit), np.float32)
        self.total, self.limit, self.path, self.rate = 0, limit, path, rate

    def add(self, block: np.ndarray):
        end = self.total + len(block)
        if end > self.limit:
            self.refuse()
        if end > len(self.buffer):
            grown = np.empty(min(max(2 * len(self.buffer), end), self.limit), np.float32)
            grown[: self.total] = self.buffer[: self.total]
            self.buffer = grown
        # channels averaged row by row: the same values as averaging the whole array at once
        self.buffer[self.total : end] = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
        self.total = end

    def array(self) -> np.ndarray:
        return self.buffer[: self.total]

    def refuse(self):
        raise AudioError(
            f"{self.path} holds more than {MAX_AUDIO_HOURS} hours of audio at {self.rate} Hz, "
            "more than whisperms takes in one input: split it"
        )


def _read_into(f, samples: _Samples, size: int):
    """Blocks of `size` frames from `f` into `samples` to the end: None, or the decoder's error
    where a block failed."""
    while True:
        try:
            block = f.read(size, dtype="float32", always_2d=True)
        except RuntimeError as error:  # soundfile.LibsndfileError
            return error
        if not len(block):
            return None
        samples.add(block)


def _skip(f, frames: int):
    while frames > 0:
        read = len(f.read(min(frames, _READ_BLOCK_FRAMES), dtype="float32", always_2d=True))
        if not read:
            return
        frames -= read


def check_audio_file(file) -> str:
    """The path as a str if it names a regular file this process can open; else an AudioError saying
    why.

    The CLI calls this for every input before it loads a model, so a typo costs nothing."""
    path = os.fspath(file)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise AudioError(f"audio file not found: {path}") from None
    except PermissionError:  # a folder on the way that this user may not enter
        raise AudioError(f"cannot read audio file {path}: permission denied") from None
    # ENAMETOOLONG, ELOOP, EACCES on a parent folder, an embedded NUL
    except (OSError, ValueError) as error:
        raise AudioError(
            f"cannot open audio file {path}: {getattr(error, 'strerror', None) or error}"
        ) from None
    if stat.S_ISDIR(mode):
        raise AudioError(f"{path} is a folder, not an audio file")
    if not stat.S_ISREG(mode):  # a FIFO would block, a device never end
        raise AudioError(f"{path} is not a regular file")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise AudioError(f"cannot read audio file {path}: permission denied") from None
    except OSError as error:
        raise AudioError(f"cannot read audio file {path}: {error.strerror or error}") from None
    return path


def as_waveform(audio, source: str = "audio array") -> np.ndarray:
    """An array of samples as mono float32 (load_audio's docstring says what is taken and how)."""
    try:
        array = np.asarray(audio)
    except (TypeError, ValueError) as error:  # ragged nested lists, objects without an array form
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
    return _finite(waveform, source)


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
    warnings.warn(
        f"{source}: {np.count_nonzero(bad)} of {audio.size} samples are not finite (NaN or "
        "infinity) and "
        "were set to 0",
        WhispermsWarning,
        stacklevel=3,
    )
    return np.where(bad, np.float32(0), audio).astype(np.float32, copy=False)


@contextmanager
def _decoder_output_hidden():
    """File descriptor 2 on /dev/null while libsndfile decodes: its MP3 decoder (mpg123) writes
    notes such as "Note: Trying to resync..." straight to the process's stderr on damaged input, and
    they are not ours to show (a file that fails is reported by AudioError). Anything another thread
    writes to fd 2 meanwhile is lost too."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    # no fd 2 (a daemon), or sys.stderr closed or None
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _load_with_ffmpeg(path: str, sr: int) -> np.ndarray:
    """openai's exact ffmpeg invocation: mono 16-bit PCM at `sr` on stdout."""
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-threads",
        "0",
        "-i",
        path,
        "-f",
        "s16le",
        "-ac",
        "1",
        "-acodec",
        "pcm_s16le",
        "-ar",
        str(sr),
        "-",
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, check=True).stdout
    except subprocess.CalledProcessError as e:
        lines = [
            line.strip() for line in e.stderr.decode(errors="replace").splitlines() if line.strip()
        ]
        reason = lines[-1] if lines else f"ffmpeg exited with status {e.returncode}"
        raise AudioError(f"could not decode audio file {path}: {reason}") from None
    return np.frombuffer(out, np.int16).astype(np.float32) / 32768.0


def pad_or_trim(array, length: int = N_SAMPLES, *, axis: int = -1):
    """Zero-pad or cut `axis` to `length`, the fixed window the encoder was trained on (ndarray or
    MindSpore Tensor)."""
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
        raise ValueError(f"unsupported n_mels {n_mels}: Whisper models use 80 or 128 mel bins")
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
