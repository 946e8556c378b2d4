"""What libsndfile does not read (M4A/AAC, WebM/Opus, MP4, 5.1 AAC): decoded by the ffmpeg binary
when it is on PATH, else by PyAV in-process, the same samples as faster-whisper's decode_audio; and
what neither reads, in one line. The files are encoded here from a real clip by the imageio-ffmpeg
wheel's binary (a test dependency), given by its full path so that it is on PATH only where a test
puts it there."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile

from whisperms.audio import SAMPLE_RATE, load_audio
from whisperms.audio_files import AudioSource
from whisperms.errors import AudioError
from whisperms.ffmpeg_decode import load_with_av

from conftest import DATA

JFK = DATA / "jfk_inaugural_1961.flac"  # 11.0 s
JFK_TEXT = (
    "And so my fellow Americans ask not what your country can do for you "
    "ask what you can do for your country."
)
# (file name, ffmpeg's output options): a phone's AAC, a browser's Opus in WebM, 5.1 AAC
RECORDINGS = [
    ("phone.m4a", ["-ar", "44100", "-ac", "2", "-c:a", "aac", "-b:a", "128k"]),
    ("browser.webm", ["-ar", "48000", "-ac", "2", "-c:a", "libopus"]),
    ("surround.m4a", ["-ar", "48000", "-ac", "6", "-c:a", "aac"]),
]


def encode(ffmpeg_folder, source, path, options):
    command = [str(ffmpeg_folder / "ffmpeg"), "-nostdin", "-loglevel", "error", "-y"]
    subprocess.run([*command, *source, *options, str(path)], check=True)
    return path


@pytest.mark.parametrize("name, options", RECORDINGS)
def test_recordings_decode_without_the_ffmpeg_binary(
    tmp_path, monkeypatch, ffmpeg_folder, no_ffmpeg, name, options
):
    """Without ffmpeg on PATH these were an error ("files need ffmpeg"), as a server's browser
    and phone uploads were. PyAV decodes them now: bit for bit faster-whisper's decode_audio, by
    path, as a file object and as bytes; and the binary, when on PATH, still runs openai's command
    (the same start; AAC's last frame's padding is trimmed by the binary only)."""
    from faster_whisper.audio import decode_audio

    path = encode(ffmpeg_folder, ["-i", str(JFK)], tmp_path / name, options)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    np.testing.assert_array_equal(audio, decode_audio(str(path)))
    np.testing.assert_array_equal(load_audio(path.read_bytes()), audio)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(load_audio(f), audio)
    reference = load_audio(JFK)
    assert 0 <= (len(audio) - len(reference)) / SAMPLE_RATE < 0.02
    assert np.corrcoef(audio[: len(reference)], reference)[0, 1] > 0.99
    monkeypatch.setenv("PATH", str(ffmpeg_folder))
    by_binary = load_audio(path)
    assert len(by_binary) == len(reference)
    assert np.abs(by_binary - audio[: len(by_binary)]).max() < 2e-3


def test_an_m4a_is_transcribed_without_ffmpeg(tmp_path, ffmpeg_folder, no_ffmpeg, tiny_en_model):
    path = encode(ffmpeg_folder, ["-i", str(JFK)], tmp_path / "phone.m4a", RECORDINGS[0][1])
    # every word; a lossy copy may lose the last full stop
    text = tiny_en_model.transcribe(str(path), language="en").text.strip()
    assert text.rstrip(".") == JFK_TEXT[:-1]


def test_a_name_with_colons_is_a_file_to_the_ffmpeg_binary(
    tmp_path, monkeypatch, ffmpeg_folder, no_ffmpeg
):
    """ffmpeg reads a name's start up to a colon as a protocol: a recording named by `date
    -Iseconds`, given relative, was "Protocol not found" with the binary on PATH (PyAV, without
    it, decoded the file). A failure names the file as it was given."""
    monkeypatch.chdir(tmp_path)
    name = "rec-2024-05-01T10:30:00.m4a"
    encode(ffmpeg_folder, ["-i", str(JFK)], tmp_path / name, RECORDINGS[0][1])
    (tmp_path / "bad:take.m4a").write_text("not audio\n")
    monkeypatch.setenv("PATH", str(ffmpeg_folder))
    reference = load_audio(JFK)
    audio = load_audio(name)
    assert len(audio) == len(reference)
    assert np.corrcoef(audio, reference)[0, 1] > 0.99
    # link/../take.m4a is real/take.m4a, not the ./take.m4a its text would normalise to
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "sub")
    (tmp_path / name).rename(tmp_path / "real" / "take.m4a")
    np.testing.assert_array_equal(load_audio("link/../take.m4a"), audio)
    with pytest.raises(AudioError) as info:
        load_audio("bad:take.m4a")
    assert str(info.value).startswith("could not decode audio file bad:take.m4a: ")
    assert str(tmp_path) not in str(info.value)


def test_what_ffmpeg_does_not_read_is_one_line(tmp_path, monkeypatch, ffmpeg_folder, no_ffmpeg):
    """Text named as audio or video, a video without sound, and an input over the length limit,
    through PyAV; without PyAV either, a file named as a format FFmpeg reads says what it needs."""
    notes, talk = tmp_path / "notes.txt", tmp_path / "talk.mp4"
    for path in (notes, talk):
        path.write_text("not audio\n")
        with pytest.raises(AudioError) as info:
            load_audio(path)
        assert str(info.value) == (
            f"could not decode audio file {path}: not a supported audio format, or corrupted"
        )
    silent = tmp_path / "silent.mp4"
    encode(ffmpeg_folder, ["-f", "lavfi", "-i", "testsrc=duration=1"], silent, ["-c:v", "mpeg4"])
    with pytest.raises(AudioError) as info:
        load_audio(silent)
    assert str(info.value) == f"could not decode audio file {silent}: it holds no audio stream"
    m4a = encode(ffmpeg_folder, ["-i", str(JFK)], tmp_path / "phone.m4a", RECORDINGS[0][1])
    with pytest.raises(AudioError) as info:
        load_with_av(AudioSource(str(m4a), path=str(m4a)), SAMPLE_RATE, 10 / 3600)
    assert str(info.value) == (
        f"{m4a} holds more than 0.00277778 hours of audio, more than whisperms takes in one "
        "input: split it"
    )
    monkeypatch.setitem(sys.modules, "av", None)  # PyAV not installed
    with pytest.raises(AudioError) as info:
        load_audio(talk)
    assert str(info.value) == (
        f"cannot decode {talk}: .mp4 files need ffmpeg on PATH or PyAV (pip install av)"
    )
    with pytest.raises(AudioError) as info:
        load_audio(notes)
    assert str(info.value) == (
        f"could not decode audio file {notes}: not a supported audio format, or corrupted"
    )
    with pytest.raises(AudioError) as info:
        load_audio(m4a.read_bytes())
    assert str(info.value).endswith(
        ": not a supported audio format, or corrupted (formats other than WAV, FLAC, Ogg, Opus "
        "and MP3 need ffmpeg on PATH or PyAV)"
    )


@pytest.mark.parametrize("file_format", ["WAV", "FLAC"])
def test_surround_is_mixed_as_ffmpeg_mixes_it(
    tmp_path, monkeypatch, ffmpeg_folder, no_ffmpeg, file_format
):
    """A 5.1 file libsndfile reads was averaged, a sixth to each channel: speech in the centre
    came out at a sixth beside the LFE channel's rumble. FFmpeg mixes it as openai's and
    faster-whisper's decoders do: the centre 0.29, front left and right 0.21, the rear 0.15, the
    LFE left out; bit for bit faster-whisper's decode_audio, and the binary's when it is on PATH."""
    from faster_whisper.audio import decode_audio

    speech = load_audio(JFK)
    rumble = 0.5 * np.sin(2 * np.pi * 40 * np.arange(len(speech)) / SAMPLE_RATE)
    channels = np.zeros((len(speech), 6), np.float32)
    channels[:, 2] = speech  # FC
    channels[:, 3] = rumble  # LFE
    channels[:, 4] = channels[:, 5] = 0.1 * speech  # BL, BR
    path = tmp_path / f"surround.{file_format.lower()}"
    soundfile.write(path, channels, SAMPLE_RATE, format=file_format, subtype="PCM_16")
    audio = load_audio(path)
    np.testing.assert_array_equal(audio, decode_audio(str(path)))
    expected = (1.0 + 2 * 0.1 * 0.5) / (2 * 0.70711 + 1.0 + 2 * 0.5) * speech
    assert np.abs(audio - expected).max() < 2e-4
    monkeypatch.setenv("PATH", str(ffmpeg_folder))
    np.testing.assert_array_equal(load_audio(path), audio)
