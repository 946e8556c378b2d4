"""Audio files to samples: a file named by its path, or a file's bytes held in memory (what a
file object reads), decoded by libsndfile in-process, else by FFmpeg (ffmpeg_decode.py).

`decode_file` gives mono float32 samples at the file's own rate; `load_audio` (audio.py) resamples
and checks them.
"""

import io
import os
import re
import stat
from typing import NamedTuple, Optional, Tuple

import numpy as np
import soundfile
import soxr

from .audio_streams import later_streams, length_declared
from .decoder_output import decoder_output_hidden
from .errors import AudioError
from .ffmpeg_decode import cannot_decode, ffmpeg_loader

# The longest input a file may decode to (5.5 GB of float32 at 16 kHz): a file whose samples would
# make more (a day of audio, or a short file declaring a rate of a few Hz) is refused in one line.
MAX_AUDIO_HOURS = 24
# A file declaring a lower sample rate is not audio (its header lies, or it holds other data):
# refused, as resampling its samples to 16 kHz would make hours of them from a few kilobytes.
MIN_SAMPLE_RATE = 1000
# An input named like a URL (scheme://...)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_READ_BLOCK_FRAMES = 1 << 20  # frames per read of a file (load_audio)
# Frames per read past a point where a block failed to decode: a file damaged or cut short is
# read up to the damage, as truncated WAV and MP3 files are.
_SALVAGE_FRAMES = 1 << 12
# Bytes per second of a compressed stream up to which a file's size vouches for its declared
# length (MP3's top 320 kbit/s; a file above is taken as of unknown length), and bytes besides
# (tags, cover art).
VOUCHED_RATE, VOUCHED_EXTRA = 40000, 2**18
# Where a header declares more audio than the memory takes at once: the buffer a file is read into
# at first, grown as its samples come.
_FIRST_BUFFER_SECONDS = 600
# Bytes per sample of the uncompressed encodings, whose declared length the file's size vouches for.
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
# Fewer seconds after an unclosed WAV file's header are stray bytes, not a recording; fewer
# missing from a WAV file than its header declares, a writer's slip, not a file cut short.
_UNCLOSED_MIN_SECONDS = 0.01
# A WAV "data" length from here up is a writer's "length unknown" (a stream written to a pipe:
# 0xFFFFFFFF, or just under 2 GiB), not a promise that the file was cut short of.
_WAV_UNKNOWN_LENGTH = 0x7FFF0000
# Fewer seconds missing from a compressed file than it declares are a decoder's rounding, not
# damage.
_DECLARED_SLACK_SECONDS = 0.1
# A path is at most this long (Linux's PATH_MAX): longer bytes, or bytes holding a NUL, are a file's
# content.
PATH_MAX_BYTES = 4096


class Decoded(NamedTuple):
    samples: np.ndarray  # mono float32
    rate: int
    # what the caller warns of, in a sentence that follows the file's name, or None
    problem: Optional[str]
    # NaN and infinite samples the file held, set to 0 (before resampling, which would spread them)
    not_finite: int = 0
    # samples the file held (at its own rate, channels counted once)
    read: int = 0


class AudioSource:
    """A file to decode: by its path, or its bytes (`data`); `name` is what messages call it."""

    def __init__(
        self, name: str, path: Optional[str] = None, data: Optional[bytes] = None, named=False
    ):
        self.name, self.path, self.data = name, path, data
        self.named = named or path is not None  # `name` is a file's: else it describes the source

    @property
    def what(self) -> str:
        """The source in an error's words: "audio file NAME", or a description of content given."""
        return f"audio file {self.name}" if self.named else self.name

    def open(self):
        """A binary file object at the file's start."""
        return open(self._name(), "rb") if self.data is None else io.BytesIO(self.data)

    def sound_file(self) -> soundfile.SoundFile:
        """libsndfile's reader: by name for a path (libsndfile reads it itself), else over the
        bytes."""
        return soundfile.SoundFile(self._name() if self.data is None else io.BytesIO(self.data))

    def _name(self) -> bytes:
        # as bytes: a name that is not UTF-8 (undecodable bytes kept as surrogates) fails to encode
        return os.fsencode(self.path)

    def size(self) -> int:
        return os.path.getsize(self.path) if self.data is None else len(self.data)


def content_source(content, name: str, named: bool = False) -> AudioSource:
    """The bytes of an audio file (bytes, bytearray or memoryview) as a source; `named`: `name` is
    the file's."""
    return AudioSource(name, data=bytes(content), named=named)


def is_content(value) -> bool:
    """True for bytes that are a file's content, not a path as the OS gives it: empty, too long
    for a path, or holding a NUL (as every WAV header does); a bytearray, and a memoryview of
    bytes (one of other items holds samples)."""
    if isinstance(value, memoryview):
        return value.itemsize == 1
    if isinstance(value, bytearray):
        return True
    # empty bytes name no file either: an empty file's content
    return isinstance(value, bytes) and (not value or len(value) > PATH_MAX_BYTES or b"\0" in value)


def decode_file(source: AudioSource, sr: int) -> Decoded:
    """Mono float32 samples of the file, at its own rate (or `sr`, when ffmpeg decodes it); an
    AudioError that says why when it cannot be decoded."""
    try:
        with decoder_output_hidden():
            load = ffmpeg_loader() if _surround(source) else None
            if load is not None:
                # FFmpeg's mix, as openai's and faster-whisper's: the centre weighted above the
                # sides, the LFE channel left out (an average gave each of 5.1's six a sixth)
                return Decoded(load(source, sr, MAX_AUDIO_HOURS), sr, None)
            decoded, short, file_format = _read_mono(source, sr)
            if not short:
                decoded = _with_later_streams(source, decoded, file_format, sr)
    # soundfile.LibsndfileError; its text can be misleading ("file does not exist")
    except RuntimeError:
        if source.size() == 0:  # a failed download or copy: say so, not "corrupted"
            raise AudioError(f"could not decode {source.what}: the file is empty") from None
        load = ffmpeg_loader()
        if load is None:
            raise cannot_decode(source) from None
        return Decoded(load(source, sr, MAX_AUDIO_HOURS), sr, None)
    load = ffmpeg_loader() if short else None
    if load is not None:
        # libsndfile stopped before the declared end (its MP3 decoder gives up where FFmpeg's finds
        # the next frame): FFmpeg's reading, where it gets further
        try:
            samples = load(source, sr, MAX_AUDIO_HOURS)
        except AudioError:
            return decoded
        if len(samples) / sr > len(decoded.samples) / decoded.rate + _DECLARED_SLACK_SECONDS:
            return Decoded(samples, sr, None)
    return decoded


def _surround(source: AudioSource) -> bool:
    """More than two channels (libsndfile opens the file, a RuntimeError where it cannot)."""
    with source.sound_file() as f:
        return f.channels > 2


def _with_later_streams(source: AudioSource, first: Decoded, file_format: str, sr: int) -> Decoded:
    """The file's audio from every stream in it, one after another (`first`: its first stream's,
    all libsndfile reads of a chained Ogg file or of MP3 files joined end to end)."""
    with source.open() as raw:
        starts = later_streams(raw, source.size(), file_format)
        if not starts:
            return first
        parts, problem = [first.samples], first.problem
        not_finite, read = first.not_finite, first.read
        raw.seek(0)
        # the first stream alone: libsndfile read no more than it (one that reads on through a
        # chain, or an MP3 whose Xing header gives a byte count short of its own stream, is read
        # whole already)
        try:
            alone = _read_mono(AudioSource(source.name, data=raw.read(starts[0])), sr)[0]
        except (RuntimeError, AudioError):
            return first
        if len(first.samples) > len(alone.samples) + _DECLARED_SLACK_SECONDS * sr:
            return first
        for number, (start, end) in enumerate(zip(starts, starts[1:] + [source.size()]), 2):
            raw.seek(start)
            link = AudioSource(source.name, data=raw.read(end - start), named=source.named)
            try:
                decoded = _read_mono(link, sr)[0]
            except (RuntimeError, AudioError):
                problem = problem or (
                    f"stream {number} of the {len(starts) + 1} joined in it (from byte {start}) "
                    "could not be decoded; transcribing the others"
                )
                continue
            parts.append(decoded.samples)
            problem = problem or decoded.problem
            not_finite, read = not_finite + decoded.not_finite, read + decoded.read
            if sum(map(len, parts)) > MAX_AUDIO_HOURS * 3600 * sr:
                raise AudioError(
                    f"{source.name} holds more than {MAX_AUDIO_HOURS} hours of audio, more than "
                    "whisperms takes in one input: split it"
                )
    return Decoded(np.concatenate(parts), sr, problem, not_finite, read)


def _read_mono(source: AudioSource, sr: int) -> Tuple[Decoded, bool, str]:
    """The file's samples read a block at a time: a header may claim any length, so a file of more
    than MAX_AUDIO_HOURS is an AudioError before it fills the memory. Where a stretch fails to
    decode (damage: a FLAC stream loses sync), what follows it is read on where the decoder finds
    its way again, the stretch left silent so that later times stay where they are; a file that
    stops decoding part way (cut short) gives the audio before that. Each comes with a problem that
    says so; a file that decodes nothing is the decoder's error. Also whether it ended before the
    length it declares (ffmpeg may read more of it), and libsndfile's name of its format."""
    with source.sound_file() as f:
        rate, declared, file_format = f.samplerate, f.frames, f.format
        if rate < MIN_SAMPLE_RATE:
            raise AudioError(
                f"{source.name} declares a sample rate of {rate} Hz, below the {MIN_SAMPLE_RATE} "
                "Hz of any audio: not an audio file, or its header is damaged"
            )
        samples = _Samples(declared, int(MAX_AUDIO_HOURS * 3600 * rate), source.name, rate, sr)
        # a length the file's size vouches for (uncompressed samples) is refused before hours of
        # reading; a compressed stream's declared length may lie, and is read as far as it goes
        width = _SAMPLE_BYTES.get(f.subtype)
        if width is not None and samples.limit < declared <= source.size() // (f.channels * width):
            samples.refuse()
        failure = _read_into(f, samples, _READ_BLOCK_FRAMES)
        if failure is None:
            wav = f.format in ("WAV", "WAVEX") and width is not None
            short = _wav_cut_short(source, samples.total, f.channels * width, rate) if wav else None
            if wav and not samples.total:
                if short is not None:  # the header declares audio, and none follows it
                    raise AudioError(f"could not decode {source.what}: {short}")
                return _unclosed_wav(source, f, samples), False, file_format
            if not wav and declared <= samples.limit and length_declared(source, f.format):
                short = _short_of_declared(samples.total, declared, rate)
            return samples.decoded(short), short is not None, file_format
        failure = _up_to_damage(source, f, samples)
    if failure is not None and not samples.total:
        raise failure
    skipped = 0
    while failure is not None:
        resumed = _past_damage(source, samples, declared)
        if resumed is None:  # nothing decodes further on: cut short
            break
        gap, failure = resumed
        skipped += gap
    problem = None
    if failure is not None:
        problem = (
            f"the audio stops decoding after {samples.total / rate:.1f} s (the file is damaged or "
            "cut short); transcribing what was read"
        )
    elif skipped:
        problem = (
            f"{skipped / rate:.1f} s of the audio could not be decoded (the file is damaged); "
            "transcribing them as silence"
        )
    return samples.decoded(problem), failure is not None, file_format


def _short_of_declared(frames: int, declared: int, rate: int) -> Optional[str]:
    """The problem of a file that decoded to fewer frames than it declares, or None."""
    missing = declared - frames
    if missing < rate * _DECLARED_SLACK_SECONDS:
        return None
    return (
        f"{missing / rate:.1f} s of the {declared / rate:.1f} s the file declares did not decode "
        f"(the file is damaged or cut short); transcribing the {frames / rate:.1f} s that did"
    )


def _up_to_damage(source: AudioSource, f, samples) -> Optional[RuntimeError]:
    """After a block of `f` failed: that block again, in small reads, up to where it fails (the
    failure, or None if it now reads to the end)."""
    try:
        f.seek(samples.total)
    except RuntimeError:  # a decoder that lost sync may not seek at all
        # a fresh decoder, read up to the good frames (they decoded before), then in small reads
        with source.sound_file() as fresh:
            _skip(fresh, samples.total)
            return _read_into(fresh, samples, _SALVAGE_FRAMES)
    return _read_into(f, samples, _SALVAGE_FRAMES)


def _past_damage(source: AudioSource, samples, declared: int):
    """Where a read failed at samples.total: the first point further on, at ever larger steps
    within the declared length, where the decoder reads again (libFLAC finds the next good frame);
    the frames skipped go in as silence, then the rest as far as it reads. (frames skipped, the
    next failure or None), or None when nothing reads further on."""
    start, skip = samples.total, _SALVAGE_FRAMES
    while start + skip < declared:
        try:
            f = source.sound_file()
        except RuntimeError:
            return None
        with f:
            try:
                f.seek(start + skip)
                block = f.read(_SALVAGE_FRAMES, dtype="float32", always_2d=True)
            except RuntimeError:
                skip *= 2
                continue
            if not len(block):
                return None
            samples.add(np.zeros((skip, 1), np.float32))
            samples.add(block)
            failure = _read_into(f, samples, _READ_BLOCK_FRAMES)
            if failure is not None:
                failure = _up_to_damage(source, f, samples)
            return skip, failure
    return None


def _unclosed_wav(source: AudioSource, f, samples) -> Decoded:
    """A WAV file whose header declares no samples where samples follow it: what a recorder leaves
    when it is stopped before it closes the file (the sizes are written last). The bytes after the
    header are read as the samples its format chunk describes, as ffmpeg reads them."""
    width = f.channels * _SAMPLE_BYTES[f.subtype]
    with source.open() as raw:
        chunk = _wav_data_chunk(raw, source.size())
        offset = chunk[0] if chunk is not None else None
        # counted here: libsndfile takes the whole file's length for the samples' (the header
        # too), and reads past the end what is not there
        frames = (source.size() - offset) // width if offset is not None else 0
        if frames < f.samplerate * _UNCLOSED_MIN_SECONDS:  # an empty WAV, and a few bytes more
            return samples.decoded(None)
        raw.seek(offset)
        if _starts_a_chunk(raw.read(8), source.size() - offset):  # an empty WAV, then its chunks
            return samples.decoded(None)
        if frames > samples.limit:
            samples.refuse()
        raw.seek(offset)
        with soundfile.SoundFile(
            raw,
            format="RAW",
            subtype=f.subtype,
            samplerate=f.samplerate,
            channels=f.channels,
            endian="LITTLE",
        ) as body:
            failure = _read_into(body, samples, _READ_BLOCK_FRAMES, frames)
    if failure is not None:
        raise failure
    problem = (
        f"its header declares no audio, but {samples.total / f.samplerate:.1f} s follow it (a "
        "recording that was not closed?); transcribing them"
    )
    return samples.decoded(problem)


def _wav_cut_short(source: AudioSource, frames: int, frame_bytes: int, rate: int) -> Optional[str]:
    """The problem of a WAV file that ends before the samples its header declares (a download or
    a copy cut short; libsndfile reads what there is and says nothing), or None."""
    with source.open() as raw:
        chunk = _wav_data_chunk(raw, source.size())
    if chunk is None or chunk[1] >= _WAV_UNKNOWN_LENGTH:
        return None
    declared = chunk[1] // frame_bytes
    if declared - frames < rate * _UNCLOSED_MIN_SECONDS:  # a writer's slip of a few samples
        return None
    if not frames:
        return (
            f"the file ends with its header, before any of the {declared / rate:.2f} s of audio "
            "it declares (cut short?)"
        )
    return (
        f"the file ends after {frames / rate:.2f} s of the {declared / rate:.2f} s its header "
        "declares (cut short?); transcribing what was read"
    )


def _wav_data_chunk(raw, size: int) -> Optional[Tuple[int, int]]:
    """(where the samples start, the length in bytes the header gives them) of a RIFF WAV file's
    "data" chunk, found by reading each chunk's header and seeking over its body; None if there
    is no such chunk."""
    raw.seek(0)
    head = raw.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    position = 12
    while position + 8 <= size:
        raw.seek(position)
        chunk = raw.read(8)
        if len(chunk) < 8:
            return None
        length = int.from_bytes(chunk[4:8], "little")
        if chunk[:4] == b"data":
            return position + 8, length
        position += 8 + length + (length & 1)  # chunks are padded to an even length
    return None


def _starts_a_chunk(head: bytes, remaining: int) -> bool:
    """True if `head` is a RIFF chunk header (a printable id and a size that fits what follows)."""
    return (
        len(head) == 8
        and all(32 <= byte < 127 for byte in head[:4])
        and int.from_bytes(head[4:8], "little") <= remaining - 8
    )


class _Samples:
    """A file's samples as they are read: channels averaged, NaN and infinities set to 0, and
    resampled to `sr` block by block (soxr's stream gives the same samples as resampling the whole
    at once), so that only the resampled audio is held, in one buffer of the length the header
    declares (pages never written are never touched, so a header claiming too much costs no
    memory), grown if the file holds more. `total` counts the file's frames read (where a reader
    seeks to), `limit` bounds them."""

    def __init__(self, declared: int, limit: int, name: str, rate: int, sr: int):
        self.total, self.limit, self.name, self.rate, self.sr = 0, limit, name, rate, sr
        self.stream = (
            None if rate == sr else soxr.ResampleStream(rate, sr, 1, dtype="float32", quality="HQ")
        )
        frames = min(max(declared, 0), limit)
        try:
            self.buffer = np.empty(self._out(frames) + 1, np.float32)
        except MemoryError:  # more than the machine commits at once (the header may lie): grown
            self.buffer = np.empty(
                self._out(min(frames, _FIRST_BUFFER_SECONDS * rate)) + 1, np.float32
            )
        self.filled, self.not_finite = 0, 0

    def _out(self, frames: int) -> int:
        return -(-frames * self.sr // self.rate)

    def add(self, block: np.ndarray):
        end = self.total + len(block)
        if end > self.limit:
            self.refuse()
        # channels averaged row by row: the same values as averaging the whole array at once
        mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
        with np.errstate(invalid="ignore"):  # inf + -inf
            finite = np.isfinite(mono.sum(dtype=np.float64))
        if not finite:
            bad = ~np.isfinite(mono)
            self.not_finite += int(np.count_nonzero(bad))
            mono = np.where(bad, np.float32(0), mono).astype(np.float32, copy=False)
        self.total = end
        self._keep(mono if self.stream is None else self.stream.resample_chunk(mono))

    def _keep(self, samples: np.ndarray):
        end = self.filled + len(samples)
        if end > len(self.buffer):
            grown = np.empty(max(2 * len(self.buffer), end), np.float32)
            grown[: self.filled] = self.buffer[: self.filled]
            self.buffer = grown
        self.buffer[self.filled : end] = samples
        self.filled = end

    def decoded(self, problem: Optional[str]) -> Decoded:
        """What was read, at `sr` (the resampler's last samples let out)."""
        if self.stream is not None and self.total:
            self._keep(self.stream.resample_chunk(np.empty(0, np.float32), last=True))
            self.stream = None
        return Decoded(self.buffer[: self.filled], self.sr, problem, self.not_finite, self.total)

    def refuse(self):
        raise AudioError(
            f"{self.name} holds more than {MAX_AUDIO_HOURS} hours of audio at {self.rate} Hz, "
            "more than whisperms takes in one input: split it"
        )


def _read_into(f, samples: _Samples, size: int, frames: Optional[int] = None):
    """Blocks of `size` frames from `f` into `samples` to the end, or to `frames` of them: None,
    or the decoder's error where a block failed."""
    while frames is None or frames > 0:
        wanted = size if frames is None else min(size, frames)
        try:
            block = f.read(wanted, dtype="float32", always_2d=True)
        except RuntimeError as error:  # soundfile.LibsndfileError
            return error
        if not len(block):
            return None
        samples.add(block)
        if len(block) < wanted:
            # libsndfile's end of the stream: after a damaged stretch its Ogg reader, asked again,
            # hands back a copy of audio it has already given
            return None
        if frames is not None:
            frames -= len(block)
    return None


def _skip(f, frames: int):
    while frames > 0:
        read = len(f.read(min(frames, _READ_BLOCK_FRAMES), dtype="float32", always_2d=True))
        if not read:
            return
        frames -= read


def check_audio_file(file, pipes: bool = False) -> str:
    """The path as a str if it names a regular file this process can open, or with `pipes` a pipe
    (a named FIFO, or bash's <(...), which the CLI reads whole; not opened here, as a check's open
    and close would end its writer); else an AudioError saying why.

    The CLI calls this for every input before it loads a model, so a typo costs nothing."""
    path = os.fspath(file)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if _URL.match(path):  # openai's CLI hands it to ffmpeg, which fetches it
            raise AudioError(f"{path}: URLs are not read: download the file first") from None
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
    if stat.S_ISFIFO(mode):
        if not pipes:  # its open waits for a writer: given as a file object, it is read
            raise AudioError(
                f"{path} is a named pipe, not a file (load_audio reads one given opened: "
                "open(path, 'rb'))"
            )
        if not os.access(path, os.R_OK):
            raise AudioError(f"cannot read audio file {path}: permission denied")
        return path
    if not stat.S_ISREG(mode):  # a device: /dev/zero would never end
        raise AudioError(f"{path} is not a regular file or a pipe")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise AudioError(f"cannot read audio file {path}: permission denied") from None
    except OSError as error:
        raise AudioError(f"cannot read audio file {path}: {error.strerror or error}") from None
    return path


def is_pipe(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def declared_seconds(file, vouched: bool = False) -> Optional[float]:
    """The seconds of audio a file's header declares, read without decoding it (libsndfile's
    formats), or None: another format, or a file check_audio_file refuses (a FIFO is never opened).
    `vouched`: None also for a file of more bytes than that length takes (uncompressed, or at
    VOUCHED_RATE): joined files and chained Ogg declare their first stream's length."""
    try:
        path = check_audio_file(file)
        with decoder_output_hidden():
            info = soundfile.info(os.fsencode(path))
        width = _SAMPLE_BYTES.get(info.subtype, VOUCHED_RATE / info.samplerate / info.channels)
        if vouched and os.path.getsize(path) > info.frames * info.channels * width + VOUCHED_EXTRA:
            return None
        return info.duration
    except Exception:
        return None
