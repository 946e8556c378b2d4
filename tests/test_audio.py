"""The audio front end against an independent float64 rendering of openai's recipe, on the real
clips in tests/data."""

import warnings
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile

from whisperms.audio import (
    CHUNK_LENGTH,
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    N_FFT,
    N_FRAMES,
    N_SAMPLES,
    N_SAMPLES_PER_TOKEN,
    SAMPLE_RATE,
    TOKENS_PER_SECOND,
    load_audio,
    log_mel_spectrogram,
    mel_filters,
    pad_or_trim,
)
from whisperms.errors import AudioError

DATA = Path(__file__).parent / "data"

MP3_44K = "librivox_shakespeare-sonnet-001.mp3"
WAV_22K = "ljspeech_LJ001-0001.wav"
FLAC_44K_STEREO = "jfk_inaugural_1961.flac"
FLAC_16K = "librispeech-dev-clean_1988-24833-0001.flac"
OPUS = "mls_es_13697_11991_000000.opus"
MEL_CLIPS = [MP3_44K, WAV_22K, FLAC_44K_STEREO, FLAC_16K, OPUS]


def reference_log_mel(audio, n_mels):
    """openai's log_mel_spectrogram written a second way: float64 throughout, frames by fancy
    indexing, an explicit DFT matrix instead of an FFT, every centered frame computed and the last
    one dropped as openai does."""
    x = np.pad(np.asarray(audio, np.float64), 200, mode="reflect")
    n_frames = 1 + (len(x) - 400) // 160
    frames = x[np.arange(400)[None, :] + 160 * np.arange(n_frames)[:, None]]
    # periodic, as torch.hann_window
    frames = frames * scipy.signal.get_window("hann", 400, fftbins=True)
    angle = 2 * np.pi * np.outer(np.arange(201), np.arange(400)) / 400
    power = (frames @ np.cos(angle).T) ** 2 + (frames @ np.sin(angle).T) ** 2  # (frames, 201)
    power = power.T[:, :-1]
    mel = librosa.filters.mel(sr=16000, n_fft=400, n_mels=n_mels, dtype=np.float64) @ power
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


@pytest.fixture(scope="module")
def clips():
    return {name: load_audio(DATA / name) for name in MEL_CLIPS}


def test_constants_are_openais():
    assert (SAMPLE_RATE, N_FFT, HOP_LENGTH, CHUNK_LENGTH) == (16000, 400, 160, 30)
    assert (N_SAMPLES, N_FRAMES, N_SAMPLES_PER_TOKEN) == (480000, 3000, 320)
    assert (FRAMES_PER_SECOND, TOKENS_PER_SECOND) == (100, 50)


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("name", MEL_CLIPS)
def test_log_mel_matches_independent_reference(clips, name, n_mels):
    audio = clips[name]
    ours = log_mel_spectrogram(audio, n_mels=n_mels)
    assert ours.dtype == np.float32
    assert ours.shape == (n_mels, len(audio) // HOP_LENGTH)
    np.testing.assert_allclose(ours, reference_log_mel(audio, n_mels), rtol=0, atol=1e-4)


def test_log_mel_padding_and_30s_window(clips):
    audio = clips[MP3_44K]
    padded = log_mel_spectrogram(audio, padding=N_SAMPLES)
    assert padded.shape == (80, (len(audio) + N_SAMPLES) // HOP_LENGTH)
    reference = reference_log_mel(np.concatenate([audio, np.zeros(N_SAMPLES, np.float32)]), 80)
    np.testing.assert_allclose(padded, reference, rtol=0, atol=1e-4)

    window = log_mel_spectrogram(pad_or_trim(clips[FLAC_16K]))
    assert window.shape == (80, N_FRAMES)
    assert log_mel_spectrogram(pad_or_trim(audio), n_mels=128).shape == (128, N_FRAMES)


def test_log_mel_accepts_a_path(clips):
    np.testing.assert_array_equal(
        log_mel_spectrogram(DATA / WAV_22K), log_mel_spectrogram(clips[WAV_22K])
    )
    np.testing.assert_array_equal(
        log_mel_spectrogram(str(DATA / WAV_22K)), log_mel_spectrogram(clips[WAV_22K])
    )


def test_log_mel_of_audio_shorter_than_a_hop_is_empty():
    assert log_mel_spectrogram(np.zeros(HOP_LENGTH - 1, np.float32)).shape == (80, 0)


@pytest.mark.parametrize("name", [WAV_22K, FLAC_16K])
def test_log_mel_matches_faster_whisper(clips, name):
    """faster-whisper's NumPy port of openai's recipe is a second, unrelated implementation."""
    feature_extractor = pytest.importorskip("faster_whisper.feature_extractor")
    for n_mels in (80, 128):
        theirs = feature_extractor.FeatureExtractor(feature_size=n_mels)(clips[name], padding=0)
        np.testing.assert_allclose(
            log_mel_spectrogram(clips[name], n_mels=n_mels), theirs, rtol=0, atol=1e-4
        )


def test_log_mel_matches_openai_torch_code(clips):
    """openai's own torch code, when torch happens to be installed (it is not a dependency)."""
    torch = pytest.importorskip("torch")
    for name in (MP3_44K, WAV_22K):
        audio = torch.from_numpy(clips[name])
        stft = torch.stft(
            audio, N_FFT, HOP_LENGTH, window=torch.hann_window(N_FFT), return_complex=True
        )
        magnitudes = stft[..., :-1].abs() ** 2
        mel_spec = torch.from_numpy(mel_filters(80).copy()) @ magnitudes
        log_spec = torch.clamp(mel_spec, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        expected = ((log_spec + 4.0) / 4.0).numpy()
        np.testing.assert_allclose(log_mel_spectrogram(clips[name]), expected, rtol=0, atol=1e-4)


def test_every_clip_loads_as_16k_mono_float32(manifest):
    assert len(manifest) >= 30
    mismatches = []
    for row in manifest:
        audio = load_audio(DATA / row["file"])
        assert audio.dtype == np.float32 and audio.ndim == 1, row["file"]
        assert np.isfinite(audio).all() and np.abs(audio).max() > 0.01, row["file"]
        duration = len(audio) / SAMPLE_RATE
        # mp3 durations in the manifest count the encoder's padding frames; the gapless decode is
        # ~0.04 s shorter.
        if abs(duration - float(row["duration_s"])) > 0.05:
            mismatches.append((row["file"], duration, row["duration_s"]))
    assert not mismatches


def test_stereo_44k_is_downmixed_and_resampled(tmp_path):
    mono, rate = soundfile.read(DATA / "speechrecognition_english.wav", dtype="float32")
    assert rate == 44100 and mono.ndim == 1
    stereo_path = tmp_path / "stereo.wav"
    soundfile.write(stereo_path, np.stack([mono, 0.5 * mono], axis=1), rate, subtype="FLOAT")

    stereo = load_audio(stereo_path)
    reference = load_audio(DATA / "speechrecognition_english.wav")
    assert stereo.dtype == np.float32 and stereo.ndim == 1
    assert abs(len(stereo) - len(mono) * SAMPLE_RATE / rate) <= 1
    assert len(stereo) == len(reference)
    assert np.corrcoef(stereo, reference)[0, 1] > 0.99
    np.testing.assert_allclose(stereo, 0.75 * reference, atol=1e-4)  # the mean of the two channels


def test_array_input_is_returned_as_float32():
    audio = load_audio(np.arange(10, dtype=np.float64))
    assert audio.dtype == np.float32 and audio.tolist() == list(range(10))


def test_missing_file_raises_with_the_path(tmp_path):
    path = tmp_path / "nowhere.wav"
    with pytest.raises(AudioError, match="audio file not found") as info:
        load_audio(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "name,content",
    [
        ("x.wav", np.random.default_rng(0).bytes(20000)),
        ("x.mp3", b"this is a text file, not an mp3\n" * 100),
    ],
)
def test_undecodable_file_raises_one_line_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "could not decode" in message


@pytest.mark.parametrize("name", ["x.wav", "x.m4a", "x"])
def test_an_empty_file_is_said_to_be_empty(tmp_path, name):
    """A zero-byte file (a failed download or copy) was 'not a supported audio format, or
    corrupted', or blamed on a missing ffmpeg."""
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert str(info.value) == f"could not decode audio file {path}: the file is empty"


def test_pad_or_trim_numpy():
    audio = np.ones(1000, np.float32)
    assert pad_or_trim(audio).shape == (N_SAMPLES,)
    assert pad_or_trim(audio)[1000:].max() == 0
    assert pad_or_trim(np.ones(N_SAMPLES + 5)).shape == (N_SAMPLES,)
    mel = np.ones((80, 3500), np.float32)
    assert pad_or_trim(mel, N_FRAMES).shape == (80, N_FRAMES)
    assert pad_or_trim(mel[:, :10], N_FRAMES).shape == (80, N_FRAMES)
    assert pad_or_trim(np.ones((5, 3)), 8, axis=0).shape == (8, 3)
    assert pad_or_trim(np.ones((5, 3)), 2, axis=0).shape == (2, 3)


def test_pad_or_trim_mindspore_tensor():
    mindspore = pytest.importorskip("mindspore")
    mel = mindspore.Tensor(np.ones((2, 80, 2900), np.float32))
    padded = pad_or_trim(mel, N_FRAMES)
    assert padded.shape == (2, 80, N_FRAMES)
    assert float(padded[..., 2900:].abs().max()) == 0.0
    assert pad_or_trim(mindspore.Tensor(np.ones((80, 3100), np.float32)), N_FRAMES).shape == (
        80,
        N_FRAMES,
    )


def test_mel_filters():
    for n_mels in (80, 128):
        filters = mel_filters(n_mels)
        assert filters.shape == (n_mels, N_FFT // 2 + 1) and filters.dtype == np.float32
        assert mel_filters(n_mels) is filters  # cached
        np.testing.assert_allclose(
            filters, librosa.filters.mel(sr=16000, n_fft=400, n_mels=n_mels), rtol=0, atol=0
        )
    with pytest.raises(ValueError):
        mel_filters(81)


def test_mel_filters_match_faster_whisper_slaney_port():
    feature_extractor = pytest.importorskip("faster_whisper.feature_extractor")
    for n_mels in (80, 128):
        theirs = feature_extractor.FeatureExtractor.get_mel_filters(16000, 400, n_mels=n_mels)
        np.testing.assert_allclose(mel_filters(n_mels), theirs, rtol=1e-5, atol=1e-8)


def test_a_flac_damaged_mid_file_is_decoded_around_the_damage(tmp_path):
    """Random bytes half way into a FLAC: the decoder loses sync there (the whole file was refused,
    then the audio before the damage came back alone). Now what follows is decoded from the next
    frame that reads, as ffmpeg does, the damaged stretch silent so that later times stay put; a
    warning says how much was lost."""
    from whisperms.errors import WhispermsWarning

    data = bytearray((DATA / FLAC_44K_STEREO).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 5000] = np.random.default_rng(0).bytes(5000)
    damaged = tmp_path / "damaged.flac"
    damaged.write_bytes(bytes(data))
    whole = load_audio(DATA / FLAC_44K_STEREO)
    with pytest.warns(WhispermsWarning) as caught:
        decoded = load_audio(damaged)
    (message,) = [str(w.message) for w in caught]
    lost = float(message.split(": ", 1)[1].split(" s of the audio could not be decoded")[0])
    assert message.endswith(" (the file is damaged); transcribing them as silence")
    assert 0 < lost < 1.0
    assert len(decoded) == len(whole)
    # the same samples outside the damaged stretch (and resampling's reach around it)
    differs = np.flatnonzero(np.abs(decoded - whole) > 1e-6)
    assert differs[0] > 3 * SAMPLE_RATE and differs[-1] < len(whole) - 3 * SAMPLE_RATE
    assert (differs[-1] - differs[0]) / SAMPLE_RATE < lost + 0.1


def test_a_header_declaring_more_than_the_limit_is_refused_before_reading(tmp_path):
    """A 26-hour 8-bit WAV that is a sparse file (a few kB on disk): refused from its header, not
    after reading 24 hours of samples into memory."""
    path = tmp_path / "long.wav"
    frames = 26 * 3600 * SAMPLE_RATE
    soundfile.write(path, np.zeros(16, np.float32), SAMPLE_RATE, subtype="PCM_U8")
    header = bytearray(path.read_bytes()[:44])
    assert header[36:40] == b"data"
    header[40:44] = frames.to_bytes(4, "little")
    header[4:8] = (36 + frames).to_bytes(4, "little")
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(44 + frames)
    assert soundfile.info(str(path)).frames == frames
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert str(info.value) == (
        f"{path} holds more than 24 hours of audio at 16000 Hz, more than whisperms takes in one "
        "input: split it"
    )


def test_a_float_file_louder_than_full_scale_is_clipped(tmp_path):
    """A float WAV far above full scale: clipped to +-1, as openai's and faster-whisper's decoders
    deliver 16-bit PCM (unclipped, a 1000x file transcribed to nothing)."""
    speech = load_audio(DATA / FLAC_16K)
    loud = tmp_path / "loud.wav"
    soundfile.write(loud, speech * 1000, SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(loud), np.clip(speech * 1000, -1, 1))


def test_array_dtypes_and_paths_as_a_user_passes_them(tmp_path):
    pcm = (np.sin(np.arange(1600) / 7) * 20000).astype(np.int16)
    for dtype in (">i2", ">i4"):  # big-endian PCM is PCM
        native = pcm.astype(dtype.replace(">", "<"))
        np.testing.assert_array_equal(load_audio(native.astype(dtype)), load_audio(native))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")  # no overflow warning from the cast, no "not finite"
        samples = load_audio(np.array([0.1, 1e300, -1e300, np.finfo(np.float64).max]))
    assert samples.tolist() == pytest.approx([0.1, 1e16, -1e16, 1e16])
    # far beyond full scale: said, as an int16 recording cast to float and not scaled is
    assert [str(w.message) for w in said] == [
        "audio array: samples reach 1e+16, where full scale is 1.0 (int16 PCM not divided by "
        "32768?); transcribed as given"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # up to LOUD_PEAK, and PCM (scaled), say nothing
        load_audio(np.float32([0.5, -8.0, 2.0]))
        load_audio(pcm)
    path = tmp_path / "clip.wav"
    soundfile.write(path, pcm, SAMPLE_RATE)
    np.testing.assert_array_equal(load_audio(bytes(path)), load_audio(str(path)))
    with pytest.raises(AudioError) as info:
        load_audio(np.array([str(path), str(path)]))
    assert str(info.value) == (
        "audio array holds strings, not samples: pass one path (str or os.PathLike) per input, or "
        "an array of samples"
    )
    for sr in (0, None, 16000.0):
        with pytest.raises(AudioError, match="^sr must be a whole number of Hz, at least 1000"):
            load_audio(str(path), sr=sr)


def test_an_array_form_that_fails_is_an_audio_error():
    """An object whose array conversion raises RuntimeError, as a torch tensor that requires grad
    does: a traceback, now an AudioError of one line that gives the reason."""

    class RequiresGrad:
        def __array__(self, *args, **kwargs):
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy()"
            )

    with pytest.raises(AudioError) as info:
        load_audio(RequiresGrad())
    assert str(info.value) == (
        "audio array is not an array of samples: Can't call numpy() on Tensor that requires grad. "
        "Use tensor.detach().numpy()"
    )
