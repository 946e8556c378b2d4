"""Compressed files that are damaged or cut short (Ogg Vorbis, MP3): what libsndfile reads of them,
the warning that says what did not decode, and FFmpeg's reading where it gets further: the ffmpeg
binary of the imageio-ffmpeg wheel (a test dependency) put on PATH under its own name, or PyAV
(fixtures in conftest.py)."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import soxr

from whisperms.audio import SAMPLE_RATE, load_audio

DATA = Path(__file__).parent / "data"
JFK = DATA / "jfk_inaugural_1961.flac"  # 11.0 s


def decoded_with_warnings(path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        audio = load_audio(path)
    return audio, [str(w.message) for w in caught]


def damaged(data: bytes, at: float, size: int, seed: int) -> bytes:
    out = bytearray(data)
    start = int(len(out) * at)
    garbage = np.random.default_rng(seed).integers(0, 256, size, np.uint8)
    out[start : start + size] = garbage.tobytes()
    return bytes(out)


def test_a_damaged_ogg_stream_is_read_once_to_its_end(tmp_path, no_ffmpeg_at_all):
    """4 KiB of garbage 40% into an Ogg Vorbis file: libsndfile reads past the damaged stretch (as
    ffmpeg does, the stretch left out) and ends with a short read; asked again, it handed back a
    copy of the last audio it had given, which whisperms took as more of the file: the last second
    twice, at exactly the declared length, without a word (the transcript said its last words
    twice). Reading now stops at the short read, and a warning says how much did not decode."""
    speech, rate = soundfile.read(JFK, dtype="float32")
    whole = tmp_path / "whole.ogg"
    soundfile.write(whole, np.concatenate([speech, speech]), rate, format="OGG", subtype="VORBIS")
    intact, caught = decoded_with_warnings(whole)
    assert caught == [] and abs(len(intact) / SAMPLE_RATE - 22.0) < 0.01
    path = tmp_path / "damaged.ogg"
    path.write_bytes(damaged(whole.read_bytes(), 0.4, 4096, 0))
    audio, caught = decoded_with_warnings(path)
    seconds = len(audio) / SAMPLE_RATE
    assert 20.0 < seconds < 21.9, seconds
    assert caught == [
        f"{path}: {22.0 - seconds:.1f} s of the 22.0 s the file declares did not decode (the file "
        f"is damaged or cut short); transcribing the {seconds:.1f} s that did"
    ]
    # the end is the file's end once, not its last second again
    tail = SAMPLE_RATE // 2
    assert np.corrcoef(audio[-tail:], intact[-tail:])[0, 1] > 0.99


def test_an_mp3_that_stops_short_is_warned_and_ffmpeg_reads_on(
    tmp_path, monkeypatch, ffmpeg_folder, no_ffmpeg_at_all
):
    """A VBR MP3 (its length in a Xing header) with 2000 bytes of garbage 40% in: libsndfile's
    decoder gives up there and ends the stream cleanly, 4.3 s of 11.0 s, which whisperms took
    without a word (openai's ffmpeg reads 10.9 s of it). Now a warning says what did not decode,
    and FFmpeg's reading is taken, as it gets further (the binary on PATH, or PyAV). An MP3 cut in
    half warns the same way; whole MP3 files, with or without a Xing header, do not."""
    encoded = tmp_path / "whole.mp3"
    encode = [str(ffmpeg_folder / "ffmpeg"), "-nostdin", "-loglevel", "error", "-i", str(JFK)]
    encode += ["-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-q:a", "4", str(encoded)]
    subprocess.run(encode, check=True)
    no_xing = tmp_path / "no_xing.mp3"
    subprocess.run([*encode[:-1], "-write_xing", "0", str(no_xing)], check=True)
    for intact in (encoded, no_xing):
        audio, caught = decoded_with_warnings(intact)
        assert caught == [] and abs(len(audio) / SAMPLE_RATE - 11.0) < 0.1, intact
    reference = load_audio(encoded)
    path = tmp_path / "damaged.mp3"
    path.write_bytes(damaged(encoded.read_bytes(), 0.4, 2000, 3))
    audio, caught = decoded_with_warnings(path)
    seconds = len(audio) / SAMPLE_RATE
    assert 3.0 < seconds < 6.0, seconds
    assert caught == [
        f"{path}: {11.0 - seconds:.1f} s of the 11.0 s the file declares did not decode (the file "
        f"is damaged or cut short); transcribing the {seconds:.1f} s that did"
    ]
    np.testing.assert_array_equal(audio[: 3 * SAMPLE_RATE], reference[: 3 * SAMPLE_RATE])
    half = tmp_path / "half.mp3"
    half.write_bytes(encoded.read_bytes()[: encoded.stat().st_size // 2])
    audio, caught = decoded_with_warnings(half)
    assert len(caught) == 1 and caught[0].startswith(f"{half}: ")
    assert caught[0].endswith(" s that did") and 4.0 < len(audio) / SAMPLE_RATE < 7.0
    without_ffmpeg = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(ffmpeg_folder))
    audio, caught = decoded_with_warnings(path)
    assert caught == [] and len(audio) / SAMPLE_RATE > 10.5
    n = 3 * SAMPLE_RATE
    assert np.corrcoef(audio[:n], reference[:n])[0, 1] > 0.99
    # PyAV alone, no binary: FFmpeg's reading in-process, the same samples
    monkeypatch.setenv("PATH", without_ffmpeg)
    monkeypatch.setitem(sys.modules, "av", av)
    by_av, caught = decoded_with_warnings(path)
    assert caught == []
    np.testing.assert_array_equal(by_av, audio)


@pytest.mark.parametrize("kind", [("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3")])
def test_files_joined_end_to_end_are_read_whole(tmp_path, kind):
    """`cat a.ogg a.ogg`, a chained Ogg file (as internet radio recordings are), and `cat a.mp3
    a.mp3`, whose first Xing header gives the first file's length: libsndfile reads the first
    stream only, and whisperms transcribed half the audio without a word (ffmpeg and faster-whisper
    read both). Each stream is now decoded in turn: the samples of the two files one after the
    other."""
    file_format, subtype, extension = kind
    speech, rate = soundfile.read(JFK, dtype="float32")
    one = tmp_path / f"one.{extension}"
    soundfile.write(
        one, np.concatenate([speech, speech]), rate, format=file_format, subtype=subtype
    )
    joined = tmp_path / f"joined.{extension}"
    joined.write_bytes(one.read_bytes() * 2)
    single, caught = decoded_with_warnings(one)
    assert caught == [] and abs(len(single) / SAMPLE_RATE - 22.0) < 0.01
    audio, caught = decoded_with_warnings(joined)
    assert caught == []
    np.testing.assert_array_equal(audio, np.concatenate([single, single]))
    # as a file's content too
    np.testing.assert_array_equal(load_audio(joined.read_bytes()), audio)


@pytest.mark.parametrize("kind", [("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3")])
def test_a_length_the_file_size_does_not_vouch_for_is_unknown(tmp_path, kind):
    """Forty files joined end to end declare the first one's 22 s: a server read such an upload
    (internet radio's chained Ogg, hours of it) in the batches' thread as a short one, holding every
    other request's batch while it read. Its length counts as unknown now (read on a thread of its
    own); one file, uncompressed audio and an MP3 at its top bit rate keep theirs."""
    from whisperms.audio_files import declared_seconds
    from whisperms.batch_feed import declared_seconds as inline_seconds

    file_format, subtype, extension = kind
    speech, rate = soundfile.read(JFK, dtype="float32")
    one = tmp_path / f"one.{extension}"
    soundfile.write(
        one, np.concatenate([speech, speech]), rate, format=file_format, subtype=subtype
    )
    joined = tmp_path / f"joined.{extension}"
    joined.write_bytes(one.read_bytes() * 40)
    wav = tmp_path / "one.wav"
    soundfile.write(wav, np.concatenate([speech, speech]), rate)
    music = tmp_path / "music.mp3"  # 48 kHz stereo at 320 kbit/s, MP3's top rate
    resampled = soxr.resample(np.concatenate([speech, speech]), rate, 48000)
    stereo = resampled if resampled.ndim == 2 else np.column_stack([resampled, resampled])
    soundfile.write(
        music, stereo, 48000, format="MP3", compression_level=0.0, bitrate_mode="CONSTANT"
    )
    assert os.path.getsize(music) > 22 * 39000
    for path in (one, wav, music):
        assert abs(inline_seconds(str(path)) - 22.0) < 0.1
    assert abs(declared_seconds(str(joined)) - 22.0) < 0.1  # what the header says
    assert inline_seconds(str(joined)) is None


def test_an_mp3_whose_xing_byte_count_falls_short_is_not_read_twice(tmp_path):
    """A Xing header whose byte count ends part way into its own stream (a tag editor's or a
    cutter's stale header) at a frame's start looks like a file joined after it; libsndfile reads
    the whole stream by its frame count, so reading on from there would give the second half twice.
    The first stream alone decodes shorter than the whole: the file is taken as one."""
    import struct

    speech, rate = soundfile.read(JFK, dtype="float32")
    path = tmp_path / "one.mp3"
    soundfile.write(path, np.concatenate([speech, speech]), rate, format="MP3")
    data = bytearray(path.read_bytes())
    middle = data.index(data[:2], len(data) // 2)  # a frame header like the first, half way
    tag = data.index(b"Xing") if b"Xing" in data[:4096] else data.index(b"Info")
    flags = struct.unpack(">I", data[tag + 4 : tag + 8])[0]
    field = tag + 8 + (4 if flags & 1 else 0)
    assert flags & 2 and struct.unpack(">I", data[field : field + 4])[0] == len(data)
    data[field : field + 4] = struct.pack(">I", middle)
    stale = tmp_path / "stale.mp3"
    stale.write_bytes(bytes(data))
    np.testing.assert_array_equal(load_audio(stale), load_audio(path))
