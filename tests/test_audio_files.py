"""Audio files given as their content (bytes, file objects), WAV files a recorder never closed, and
decoding in several threads at once: real clips from tests/data."""

import io
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile

from whisperms.audio import load_audio
from whisperms.errors import AudioError, WhispermsWarning

DATA = Path(__file__).parent / "data"
CLIPS = [
    "jfk_inaugural_1961.flac",
    "ljspeech_LJ001-0001.wav",
    "librivox_shakespeare-sonnet-001.mp3",
    "mls_es_13697_11991_000000.opus",
]


@pytest.mark.parametrize("name", CLIPS)
def test_a_files_content_decodes_as_the_file_does(name):
    """faster-whisper takes a binary file object; bytes too, here: the same samples as the path."""
    path = DATA / name
    expected = load_audio(path)
    content = path.read_bytes()
    with open(path, "rb") as opened:
        from_object = load_audio(opened)
    for decoded in (from_object, load_audio(io.BytesIO(content)), load_audio(content)):
        np.testing.assert_array_equal(decoded, expected)
    np.testing.assert_array_equal(load_audio(bytearray(content)), expected)
    np.testing.assert_array_equal(load_audio(memoryview(content)), expected)


def test_content_that_is_not_audio_is_one_short_line(tmp_path):
    junk = bytes(range(256)) * 400  # 100 kB that no decoder takes
    with pytest.raises(AudioError) as info:
        load_audio(junk)
    message = str(info.value)
    assert "\n" not in message and len(message) < 300, message
    assert message.startswith("could not decode the audio bytes given: not a supported audio")
    for empty in (io.BytesIO(b""), b""):  # empty bytes name no file: "audio file not found: "
        with pytest.raises(AudioError, match=r"^could not decode the .* given: the file is empty$"):
            load_audio(empty)
    text = tmp_path / "x.wav"
    text.write_bytes((DATA / CLIPS[1]).read_bytes())
    with open(text) as opened, pytest.raises(AudioError) as info:
        load_audio(opened)
    assert str(info.value) == f"{text} is open as text: open it in binary mode ('rb')"
    with open(text, "rb") as opened, pytest.raises(AudioError) as info:
        opened.seek(10)  # what follows alone is read, and the message says where it began
        load_audio(opened)
    assert str(info.value).startswith(f"could not decode audio file {text} (from byte 10): ")
    closed = open(text, "rb")
    closed.close()
    with pytest.raises(AudioError, match=rf"^cannot read {text}: "):
        load_audio(closed)


def test_bytes_that_name_a_file_are_still_a_path_and_a_memoryview_of_samples_is_samples(tmp_path):
    path = tmp_path / "clip.wav"
    path.write_bytes((DATA / CLIPS[1]).read_bytes())
    np.testing.assert_array_equal(load_audio(os.fsencode(path)), load_audio(path))
    samples = np.linspace(-0.5, 0.5, 16000, dtype=np.float32)
    np.testing.assert_array_equal(load_audio(memoryview(samples)), samples)


def _unclosed(path: Path, samples: np.ndarray, rate: int, subtype: str, channels: int = 1):
    """A WAV file as a recorder stopped before closing it leaves it: the RIFF and data sizes 0."""
    soundfile.write(path, samples if channels == 1 else np.stack([samples] * channels, 1), rate,
                    subtype=subtype)  # fmt: skip
    content = bytearray(path.read_bytes())
    data = content.index(b"data")
    size = int.from_bytes(content[data + 4 : data + 8], "little")
    del content[data + 8 + size :]  # chunks libsndfile adds after the samples, at the close
    content[4:8] = bytes(4)
    content[data + 4 : data + 8] = bytes(4)
    path.write_bytes(bytes(content))


@pytest.mark.parametrize(("subtype", "channels"), [("PCM_16", 1), ("PCM_24", 2), ("FLOAT", 1)])
def test_a_wav_file_that_was_never_closed_gives_its_samples(tmp_path, subtype, channels):
    """Its header declares no samples: it decoded to none (an empty transcript, exit 0) where
    ffmpeg (openai, faster-whisper) reads the samples after the header. Now those, and a warning."""
    speech, rate = soundfile.read(DATA / CLIPS[1], dtype="float32")
    whole = tmp_path / "whole.wav"
    soundfile.write(whole, speech, rate, subtype=subtype)
    cut = tmp_path / "unclosed.wav"
    _unclosed(cut, speech, rate, subtype, channels)
    with pytest.warns(WhispermsWarning) as caught:
        decoded = load_audio(cut)
    assert [str(w.message) for w in caught] == [
        f"{cut}: its header declares no audio, but {len(speech) / rate:.1f} s follow it (a "
        "recording that was not closed?); transcribing them"
    ]
    np.testing.assert_allclose(decoded, load_audio(whole), atol=1e-6)


def test_an_unclosed_wav_file_with_a_long_chunk_before_its_samples(tmp_path):
    """A chunk of 100 kB before the samples (broadcast WAV's bext, JUNK padding): found all the
    same."""
    speech, rate = soundfile.read(DATA / CLIPS[1], dtype="float32")
    plain = tmp_path / "plain.wav"
    _unclosed(plain, speech, rate, "PCM_16")
    content = plain.read_bytes()
    junk = b"JUNK" + (100_000).to_bytes(4, "little") + bytes(100_000)
    padded = tmp_path / "padded.wav"
    padded.write_bytes(content[:12] + junk + content[12:])
    with pytest.warns(WhispermsWarning, match="its header declares no audio, but 9.7 s follow"):
        np.testing.assert_array_equal(load_audio(padded), load_audio(tmp_path / "plain.wav"))


def test_an_unclosed_wav_file_too_long_is_refused_before_it_is_read(tmp_path, monkeypatch):
    speech, rate = soundfile.read(DATA / CLIPS[1], dtype="float32")
    unclosed = tmp_path / "unclosed.wav"
    _unclosed(unclosed, speech, rate, "PCM_16")
    monkeypatch.setattr("whisperms.audio_files.MAX_AUDIO_HOURS", 1 / 3600)  # one second
    read = []
    monkeypatch.setattr("whisperms.audio_files._Samples.add", lambda self, block: read.append(1))
    with pytest.raises(AudioError, match="holds more than 0.000277"):
        load_audio(unclosed)
    assert not read


def test_an_empty_wav_file_is_still_empty(tmp_path):
    """No samples declared and none there, a metadata chunk after an empty data chunk, or a few
    stray bytes: no audio and no warning."""
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, np.float32), 16000, subtype="PCM_16")
    listed = tmp_path / "listed.wav"
    info = b"INFOISFT" + (8).to_bytes(4, "little") + b"whisper\0"
    listed.write_bytes(empty.read_bytes() + b"LIST" + len(info).to_bytes(4, "little") + info)
    stray = tmp_path / "stray.wav"
    stray.write_bytes(empty.read_bytes() + b"\x01\x02\x03\x04\x05")
    for path in (empty, listed, stray):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert load_audio(path).size == 0


def test_decoding_in_threads_leaves_stderr_where_it_was():
    """The decoder's own notes are hidden by pointing fd 2 at /dev/null while it reads; threads
    decoding at once each saved and put back the other's /dev/null, and the process lost its stderr
    for good."""
    before = os.fstat(2)
    paths = [DATA / name for name in CLIPS] * 2
    failures = []

    def decode(path):
        try:
            for _ in range(4):
                load_audio(path)
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=decode, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def test_a_url_is_said_to_be_one(tmp_path, monkeypatch):
    """openai's CLI reads a URL through ffmpeg; whisperms reads files: a URL was "audio file not
    found", as if mistyped. A file that happens to be named so is still read."""
    from whisperms.audio_files import check_audio_file

    url = "https://example.com/talk.mp3"
    with pytest.raises(AudioError) as error:
        check_audio_file(url)
    assert str(error.value) == f"{url}: URLs are not read: download the file first"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "https:").mkdir()
    (tmp_path / "https:" / "example.com").mkdir()
    (tmp_path / "https:" / "example.com" / "talk.mp3").write_bytes(b"x")
    assert check_audio_file(url) == url


def test_a_file_is_held_at_16_khz_only(tmp_path):
    """A 4-minute 96 kHz WAV: all of a file's samples were held at its own rate, then resampled
    (a 3-hour 48 kHz stereo WAV peaked at 2.75 GB, faster-whisper's decode_audio at 1.09 GB; 24
    hours at 96 kHz, under the limit, would have needed ~39 GB). Now each block read is resampled
    at once: the allocations peak at the 16 kHz audio and a few blocks, and the samples are those
    of resampling the whole file in one call."""
    import tracemalloc

    import soxr

    rate, seconds = 96000, 240
    t = np.arange(rate * seconds, dtype=np.float64) / rate
    signal = (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 0.5 * t)).astype(np.float32)
    path = tmp_path / "long96k.wav"
    soundfile.write(path, signal, rate, subtype="PCM_16")
    whole = soundfile.read(path, dtype="float32")[0]
    del t, signal
    tracemalloc.start()
    try:
        audio = load_audio(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(audio) == seconds * 16000
    np.testing.assert_array_equal(audio, soxr.resample(whole, rate, 16000, quality="HQ"))
    # the file's samples at 96 kHz are 92 MB of float32; the audio at 16 kHz 15 MB
    assert peak < 2 * audio.nbytes + 16 * 2**20, peak
