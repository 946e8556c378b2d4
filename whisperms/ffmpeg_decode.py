"""Decoding with FFmpeg, for what libsndfile does not read (MP4/M4A, WebM, ...) or reads less of:
the ffmpeg binary when it is on PATH (openai-whisper's exact invocation), else FFmpeg's libraries
through PyAV in-process (faster-whisper's decoder: the same 16-bit mono output at `sr`), so that a
phone's or a browser's recording needs no ffmpeg installed. `source` is an audio_files.AudioSource.
"""

import os
import shutil
import subprocess
import tempfile
from itertools import chain
from typing import Callable, List, Optional

import numpy as np

from .errors import AudioError

# Extensions of audio and video formats that ffmpeg decodes and libsndfile does not: a file named so
# that fails to decode is said to need ffmpeg (a text file or a PDF that fails is not audio).
FFMPEG_EXTENSIONS = {
    f".{name}"
    for name in (
        "m4a m4b mp4 m4v mov 3gp 3g2 aac adts alac wma wmv asf webm mkv mka avi flv amr awb ac3 "
        "eac3 dts ape wv tta mpc spx ra rm mp2 mpa mpg mpeg ts mts m2ts vob"
    ).split()
}
# Full scale of the 16-bit samples both decoders give, as openai's and faster-whisper's scale them
_INT16_SCALE = 32768.0


def ffmpeg_loader() -> Optional[Callable]:
    """`load(source, sr, max_hours)` of the FFmpeg at hand: the binary on PATH, else PyAV; None
    when there is neither."""
    if shutil.which("ffmpeg"):
        return load_with_ffmpeg
    try:
        import av  # noqa: F401
    except ImportError:
        return None
    return load_with_av


def cannot_decode(source) -> AudioError:
    """The error for a file libsndfile failed on, with no FFmpeg to try."""
    ext = os.path.splitext(source.path)[1].lower() if source.path else ""
    if ext in FFMPEG_EXTENSIONS:
        return AudioError(
            f"cannot decode {source.name}: {ext} files need ffmpeg on PATH or PyAV (pip install av)"
        )
    if source.path:
        return AudioError(
            f"could not decode {source.what}: not a supported audio format, or corrupted"
        )
    return AudioError(
        f"could not decode {source.what}: not a supported audio format, or corrupted (formats "
        "other than WAV, FLAC, Ogg, Opus and MP3 need ffmpeg on PATH or PyAV)"
    )


def load_with_ffmpeg(source, sr: int, max_hours: float) -> np.ndarray:
    """openai's exact ffmpeg invocation: mono 16-bit PCM at `sr` on stdout. A file held in memory
    is given as a temporary file, not on stdin: ffmpeg cannot seek in a pipe, and an MP4 whose
    index comes last (as phones record them) needs to."""
    if source.path is None:
        suffix = os.path.splitext(source.name)[1] if source.named else ""
        with tempfile.NamedTemporaryFile(suffix=suffix[:17]) as copy:
            copy.write(source.data)
            copy.flush()
            samples = _ffmpeg(copy.name, source, sr)
    else:
        samples = _ffmpeg(source.path, source, sr)
    if len(samples) > max_hours * 3600 * sr:
        raise _too_long(source, max_hours)
    return samples.astype(np.float32) / _INT16_SCALE


def _ffmpeg(path: str, source, sr: int) -> np.ndarray:
    # Given absolute: ffmpeg reads a name's start up to a colon as a protocol
    # ("rec-2024-05-01T10:30:00.m4a" is protocol "rec-2024-05-01T10", "pipe:0.m4a" its standard
    # input); a name starting with "/" is always a file. Not normalised: "link/../x" is not "x".
    given = os.path.join(os.getcwd(), path)
    cmd = ["ffmpeg", "-nostdin", "-threads", "0", "-i", given, "-f", "s16le", "-ac", "1"]
    cmd += ["-acodec", "pcm_s16le", "-ar", str(sr), "-"]
    try:
        run = subprocess.run(cmd, capture_output=True, check=True, stdin=subprocess.DEVNULL)
        out = run.stdout
    except subprocess.CalledProcessError as e:
        lines = [
            line.strip() for line in e.stderr.decode(errors="replace").splitlines() if line.strip()
        ]
        reason = lines[-1] if lines else f"ffmpeg exited with status {e.returncode}"
        # the name as the caller gave it; a temporary copy's name means nothing to the caller
        reason = reason.replace(given, source.name if source.path is None else path)
        raise AudioError(f"could not decode {source.what}: {reason}") from None
    return np.frombuffer(out, np.int16)


def load_with_av(source, sr: int, max_hours: float) -> np.ndarray:
    """The first audio stream, mixed to mono and resampled to `sr` 16-bit samples by FFmpeg's
    resampler, as the binary's `-ac 1 -ar sr` does. The file is opened here and handed over as a
    file object, never by name: FFmpeg would read a name as a URL (`concat:...`, `http:...`).
    Packets that fail to decode are skipped, as ffmpeg skips them."""
    import av

    limit = max_hours * 3600 * sr
    blocks: List[np.ndarray] = []
    total = 0
    try:
        with source.open() as f, av.open(f, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(f"could not decode {source.what}: it holds no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=sr)
            # the demuxer's last packet is empty: decoding it flushes the decoder, and resampling
            # None (last) the resampler
            for packet in chain(container.demux(stream), [None]):
                try:
                    frames = [None] if packet is None else packet.decode()
                except av.error.InvalidDataError:
                    continue
                for frame in frames:
                    for out in resampler.resample(frame):
                        blocks.append(out.to_ndarray().reshape(-1))
                        total += len(blocks[-1])
                if total > limit:
                    raise _too_long(source, max_hours)
    except av.error.InvalidDataError:  # no format FFmpeg knows, or nothing it can read
        raise AudioError(
            f"could not decode {source.what}: not a supported audio format, or corrupted"
        ) from None
    except av.error.FFmpegError as error:
        reason = error.strerror or type(error).__name__
        raise AudioError(f"could not decode {source.what}: {reason}") from None
    if not blocks:
        return np.zeros(0, np.float32)
    return np.concatenate(blocks).astype(np.float32) / _INT16_SCALE


def _too_long(source, max_hours: float) -> AudioError:
    return AudioError(
        f"{source.name} holds more than {max_hours:g} hours of audio, more than whisperms takes "
        "in one input: split it"
    )
