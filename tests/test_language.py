"""Language detection with base vs faster-whisper's (same weights) on the dev clips that are not
English."""

import numpy as np
import pytest

from conftest import DATA, faster_whisper_model, window_mel

faster_whisper = pytest.importorskip(
    "faster_whisper", reason="reference engine: pip install -e .[test]"
)


def test_detects_the_language_of_every_non_english_clip(base_model, base_ct2_dir, manifest):
    fw = faster_whisper_model(base_ct2_dir)
    rows = [r for r in manifest if r["language"] != "en"] + [
        r for r in manifest if r["language"] == "en"
    ][:3]
    wrong = []
    for row in rows:
        path = DATA / row["file"]
        ours, probs = base_model.detect_language(window_mel(path))
        theirs, their_p, _ = fw.detect_language(faster_whisper.decode_audio(str(path)))
        print(
            f"{row['file']}: expected {row['language']}; whisperms {ours} ({probs[ours]:.3f}), "
            f"faster-whisper {theirs} ({their_p:.3f})"
        )
        assert abs(sum(probs.values()) - 1) < 1e-6
        # README: right on every non-English dev clip (and these English ones)
        if ours != row["language"]:
            wrong.append((row["file"], ours, theirs))
    assert not wrong


# --- faster-whisper's language_detection_segments / _threshold and multilingual
# ----------------------------------------------------------------------------------------------

SPANISH = DATA / "picovoice_es_test_es.wav"  # 8.7 s
JFK = DATA / "jfk_inaugural_1961.flac"  # 11 s


@pytest.fixture(scope="module")
def fw_base(base_ct2_dir):
    return faster_whisper_model(base_ct2_dir)


def _segments(model, audio, **options):
    result = model.transcribe(audio, temperature=0.0, **options)
    return [(s.start, s.end, s.text) for s in result.segments], result.info


def _their_segments(fw, audio, **options):
    segments, info = fw.transcribe(audio, temperature=0.0, beam_size=1, **options)
    return [(round(s.start, 3), round(s.end, 3), s.text) for s in segments], info


def test_language_detection_segments_and_threshold(base_model, fw_base):
    """30 s of noise, then Spanish: the first window alone is not sure of a language (below the
    0.5 threshold: faster-whisper's vote then takes its likeliest, Norwegian Nynorsk here); with
    two windows the second decides, Spanish. With a threshold no window reaches the vote is over
    both (one each: the first found). Language, probabilities and segments as faster-whisper's."""
    from whisperms.audio import load_audio

    noise = (np.random.default_rng(0).standard_normal(16000 * 30) * 0.01).astype(np.float32)
    audio = np.concatenate([noise, load_audio(SPANISH)])
    one, info_one = _segments(base_model, audio)
    found = {}
    for segments in (2, 3):
        options = dict(language_detection_segments=segments)
        if segments == 3:
            options["language_detection_threshold"] = 1.0
        ours, info = found[segments] = _segments(base_model, audio, **options)
        theirs, their_info = _their_segments(fw_base, audio, **options)
        assert ours == theirs
        assert info.language == their_info.language
        assert info.language_probability == pytest.approx(their_info.language_probability, abs=1e-3)
        theirs_by_code = dict(their_info.all_language_probs)
        for code, probability in info.all_language_probs[:5]:  # close ones may swap places
            assert probability == pytest.approx(theirs_by_code[code], abs=2e-3), code
    assert found[2][1].language == "es" and found[2][0] != one
    assert found[3][1].language == info_one.language != "es"
    assert info_one.language_probability < 0.5


def test_multilingual_decodes_each_window_in_its_language(base_model, fw_base):
    """Spanish padded to 30 s, then JFK: detected once (Spanish), JFK comes out in Spanish; with
    multilingual=True each window is decoded in the language detected in it, given a language or
    not, as faster-whisper does: JFK in English."""
    from whisperms.audio import load_audio

    first = np.zeros(16000 * 30, np.float32)
    spanish = load_audio(SPANISH)
    first[: len(spanish)] = spanish
    audio = np.concatenate([first, load_audio(JFK)])
    once, info = _segments(base_model, audio)
    assert info.language == "es" and "Americans" not in " ".join(t for _, _, t in once)
    for options in (dict(multilingual=True), dict(multilingual=True, language="es")):
        ours, info = _segments(base_model, audio, **options)
        assert ours == _their_segments(fw_base, audio, **options)[0]
        assert ours[0][2].startswith(" Las arenas")
        assert "my fellow Americans ask not" in " ".join(t for _, _, t in ours)
        assert info.language == "es"


def test_multilingual_in_the_batched_mode_detects_each_piece_given_a_language(base_model):
    """The batched mode detects each piece's language when none is given; with multilingual=True
    also when one is (faster-whisper's pipeline): German given as English comes out German, the
    language given reported, as there."""
    from whisperms import WhispermsWarning

    german = str(DATA / "librivox_de_simplicissimus-titlepage.mp3")
    given = base_model.transcribe(german, batch_size=4, language="en", temperature=0.0)
    detected = base_model.transcribe(
        german, batch_size=4, language="en", multilingual=True, temperature=0.0
    )
    assert "nützlich" in detected.text and detected.text != given.text
    assert detected.language == "en" and detected.info.all_language_probs is None
    with pytest.warns(WhispermsWarning, match="^language_detection_segments has no effect in"):
        base_model.transcribe(SPANISH, batch_size=2, language_detection_segments=2)


def test_auto_is_detect(base_model, tiny_en_model):
    """language="auto" (whisper.cpp's and WhisperX's word, `--language auto`) detects, as None does;
    openai-whisper refuses it."""
    from whisperms.batch_inputs import BatchInput
    from whisperms.batched import BatchedTranscriber
    from whisperms.transcribe_options import transcribe_options

    french = str(DATA / "picovoice_fr_test_fr.wav")
    assert transcribe_options(language=" Auto ").decoding.language is None
    result = base_model.transcribe(french, language="auto", temperature=0.0)
    assert result.language == "fr" and result.info.language_probability < 1.0
    # a batched input's own language (a server request's), and decode()
    batched = BatchedTranscriber(base_model, batch_size=2, temperature=0.0)
    assert batched.run(BatchInput(french, language="auto")).language == "fr"
    # an English-only model has nothing to detect (a batched input's "auto" made it try)
    english = BatchedTranscriber(tiny_en_model, batch_size=2, temperature=0.0)
    jfk = str(DATA / "jfk_inaugural_1961.flac")
    assert "fellow Americans" in english.run(BatchInput(jfk, language="auto")).text
    assert (
        base_model.decode(window_mel(DATA / "picovoice_fr_test_fr.wav"), language="auto").language
        == "fr"
    )


def test_verbose_says_the_language_detected_as_openai(base_model, capsys):
    """openai's transcribe: "Detecting language ..." with verbose=True, "Detected language: ..."
    with verbose True or False (the progress bar's mode), nothing with None; whisperms printed the
    second with True only, and never the first."""
    audio = str(SPANISH)
    said = {}
    for verbose in (None, False, True):
        base_model.transcribe(audio, verbose=verbose, max_new_tokens=1, temperature=0.0)
        said[verbose] = [line for line in capsys.readouterr().out.splitlines() if "anguage" in line]
    assert said[None] == []
    assert said[False] == ["Detected language: Spanish"]
    assert said[True] == [
        "Detecting language using up to the first 30 seconds. Use `--language` to specify the "
        "language",
        "Detected language: Spanish",
    ]
