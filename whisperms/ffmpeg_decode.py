"""Decoding through the ffmpeg binary, for what libsndfile does not read (MP4, WebM, ...) or reads
less of than ffmpeg: openai-whisper's exact invocation. `source` is an audio_files.AudioSource."""

import os
import subprocess
import tempfile

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


def load_with_ffmpeg(source, sr: int) -> np.ndarray:
    """openai's exact ffmpeg invocation: mono 16-bit PCM at `sr` on stdout. A file held in memory
    is given as a temporary file, not on stdin: ffmpeg cannot seek in a pipe, and an MP4 whose
    index comes last (as phones record them) needs to."""
    if source.path is None:
        suffix = os.path.splitext(source.name)[1] if source.named else ""
        with tempfile.NamedTemporaryFile(suffix=suffix[:17]) as copy:
            copy.write(source.data)
            copy.flush()
            return _ffmpeg(copy.name, source, sr)
    return _ffmpeg(source.path, source, sr)


def _ffmpeg(path: str, source, sr: int) -> np.ndarray:
    cmd = ["ffmpeg", "-nostdin", "-threads", "0", "-i", path, "-f", "s16le", "-ac", "1"]
    cmd += ["-acodec", "pcm_s16le", "-ar", str(sr), "-"]
    try:
        out = subprocess.run(cmd, capture_output=True, check=True).stdout
    except subprocess.CalledProcessError as e:
        lines = [
            line.strip() for line in e.stderr.decode(errors="replace").splitlines() if line.strip()
        ]
        reason = lines[-1] if lines else f"ffmpeg exited with status {e.returncode}"
        if source.path is None:  # the temporary copy's name means nothing to the caller
            reason = reason.replace(path, source.name)
        raise AudioError(f"could not decode {source.what}: {reason}") from None
    return np.frombuffer(out, np.int16).astype(np.float32) / 32768.0
