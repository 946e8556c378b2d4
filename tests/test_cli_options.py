"""The `whisperms` command's own options and subcommands, run for real in subprocesses: each run's
output compared with what the Python API (or whisperms.writers) gives for the same options in this
process, on an input where the option changes the outcome, so a CLI that drops an option fails."""

import json
import re

import numpy as np
import pytest
from test_cli import assert_clean_error, run

from whisperms import load_model
from whisperms.convert import convert
from whisperms.decoding import DecodingOptions, DecodingTask
from whisperms.device import ascend_available
from whisperms.writers import get_writer

from conftest import DATA

JFK = DATA / "jfk_inaugural_1961.flac"
SHORT = DATA / "ljspeech_LJ001-0002.wav"
FRENCH = DATA / "picovoice_fr_test_fr.wav"
NAMES = [
    "tiny.en",
    "tiny",
    "base.en",
    "base",
    "small.en",
    "small",
    "medium.en",
    "medium",
    "large-v1",
    "large-v2",
    "large-v3",
    "large-v3-turbo",
]  # README's list


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    return proc


def runtime_line(proc):
    lines = [
        line
        for line in proc.stderr.splitlines()
        if line.startswith("whisperms: ") and " on " in line
    ]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --- subcommands
# --------------------------------------------------------------------------------------------------


def test_models_lists_every_name_and_what_is_local(tmp_path, tiny_en_ct2_dir):
    """`whisperms models`: every README name, the local one with its size and folder, the others not
    downloaded, and the aliases."""
    folder = convert(tiny_en_ct2_dir, tmp_path / "tiny.en", dtype="float16")
    proc = ok(run("models", env={"WHISPERMS_WEIGHTS": str(tmp_path)}))
    lines = proc.stdout.splitlines()
    size = sum(f.stat().st_size for f in folder.iterdir()) / 1e6  # the folder's files
    expected = [f"{'tiny.en':16s} {size:.0f} MB at {folder}"] + [
        f"{name:16s} not downloaded" for name in NAMES[1:]
    ]
    assert lines == expected + [f"{'large':16s} -> large-v3", f"{'turbo':16s} -> large-v3-turbo"]


def test_models_into_a_pipe_closed_early(tmp_path):
    """`whisperms models | head -1`: a reader that stops reading (here: one gone before the first
    line) is no error; that was a BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    from user_env import user_env

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "whisperms", "models"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env=user_env({"WHISPERMS_WEIGHTS": str(tmp_path)}),
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and proc.stderr == ""


def test_option_names_in_a_message_are_the_cli_s():
    """Every option a message names is spelled as on the command line, not only the first."""
    audio = DATA / "jfk_inaugural_1961.flac"
    options = ("--batch_size", "8", "--hallucination_silence_threshold", "1")
    proc = run(audio, *options, "--word_timestamps", "True")
    assert_clean_error(proc, 2, "--hallucination_silence_threshold", "leave out --batch_size")


def test_convert_overwrite(tmp_path, tiny_en_ct2_dir):
    """README's first command: `convert --overwrite` replaces an earlier checkpoint (float16 ->
    float32 here); without the flag the earlier one is kept and the error names the folder and the
    flag."""
    dst = tmp_path / "tiny.en"
    ok(run("convert", tiny_en_ct2_dir, dst, "--dtype", "float16"))
    before = (dst / "model.safetensors").read_bytes()
    assert_clean_error(run("convert", tiny_en_ct2_dir, dst), 1, str(dst), "overwrite")
    assert (dst / "model.safetensors").read_bytes() == before
    proc = ok(run("convert", "--overwrite", tiny_en_ct2_dir, dst))
    assert proc.stdout.strip() == str(dst)
    config = json.loads((dst / "config.json").read_text())
    assert config["dtype"] == "float32" and config["name"] == "tiny.en"
    assert (dst / "model.safetensors").stat().st_size > 1.9 * len(before)


# --- model lookup, device, dtype
# -------------------------------------------------------------------------------------


def test_model_dir_device_and_dtype(tmp_path, tiny_en_ct2_dir):
    """`--model tiny.en --model_dir DIR` loads DIR/tiny.en (the session's $WHISPERMS_WEIGHTS is
    empty, so nothing else can be found), `--device CPU --dtype float16` are what the runtime line
    reports, and the transcript is the one the Python API gives with download_root=DIR and
    dtype="float16" (greedy, to be quick)."""
    convert(tiny_en_ct2_dir, tmp_path / "models" / "tiny.en")
    out = tmp_path / "out"
    proc = ok(
        run(
            SHORT,
            "--model",
            "tiny.en",
            "--model_dir",
            tmp_path / "models",
            "--device",
            "CPU",
            "--dtype",
            "float16",
            "-o",
            out,
            "-f",
            "json",
            "--beam_size",
            "None",
            "--temperature_increment_on_fallback",
            "None",
        )
    )
    assert runtime_line(proc).startswith("whisperms: tiny.en on CPU, float16, ")
    model = load_model("tiny.en", download_root=tmp_path / "models", dtype="float16")
    assert (
        model.runtime.dtype == "float16"
        and model.decoder.token_embedding.weight.dtype.__str__() == "Float16"
    )
    expected = model.transcribe(str(SHORT), temperature=0.0).to_dict()
    written = json.loads((out / "ljspeech_LJ001-0002.json").read_text())
    assert written["text"] == expected["text"] and "comparatively modern" in written["text"]
    missing = run(SHORT, "--model", "tiny.en", "--model_dir", tmp_path / "empty", "-o", out)
    assert_clean_error(missing, 1, "tiny.en", str(tmp_path / "empty" / "tiny.en"))


@pytest.mark.skipif(
    ascend_available(), reason="checks the errors on a machine without an Ascend device"
)
def test_ascend_options_without_one_are_usage_errors(tmp_path, tiny_en_ct2_dir):
    """`--device Ascend` and `--attn_implementation flash_attention_2` where there is no Ascend
    device."""
    proc = run(SHORT, "--model", tiny_en_ct2_dir, "--device", "Ascend", "-o", tmp_path / "out")
    assert_clean_error(proc, 2, "Ascend")
    proc = run(
        SHORT,
        "--model",
        tiny_en_ct2_dir,
        "--attn_implementation",
        "flash_attention_2",
        "-o",
        tmp_path / "out",
    )
    assert_clean_error(proc, 2, "Ascend")
    assert not (tmp_path / "out").exists()


# --- decoding options
# --------------------------------------------------------------------------------------------------


def test_task_translate(tmp_path, base_ct2_dir, base_model):
    """`--task translate` with base on the French dev clip writes the English translation the Python
    API gives with the same (greedy) options, not a French transcript (test_transcribe_options
    checks the translation itself)."""
    proc = ok(
        run(
            FRENCH,
            "--model",
            base_ct2_dir,
            "--task",
            "translate",
            "--language",
            "fr",
            "-o",
            tmp_path,
            "-f",
            "txt",
            "--verbose",
            "False",
            "--beam_size",
            "None",
            "--temperature_increment_on_fallback",
            "None",
        )
    )
    assert proc.stdout == "" and proc.stderr == ""
    written = (tmp_path / "picovoice_fr_test_fr.txt").read_text()
    translated = base_model.transcribe(
        str(FRENCH), task="translate", language="fr", temperature=0.0
    )
    assert written == "".join(s.text.strip() + "\n" for s in translated.segments)
    assert written.isascii() and " the " in f" {written.lower()} "


def json_temperatures(folder, stem):
    return {s["temperature"] for s in json.loads((folder / f"{stem}.json").read_text())["segments"]}


def test_temperature_schedule(tmp_path, tiny_en_ct2_dir):
    """`--temperature_increment_on_fallback 0.45` with a logprob threshold no text meets (0): the
    window is decoded at 0, 0.45 and 0.9 (openai's schedule, np.arange(0, 1 + 1e-6, 0.45)) and the
    last is kept (the default schedule's last would be 1.0); with `None` only at `--temperature`."""
    common = (
        SHORT,
        "--model",
        tiny_en_ct2_dir,
        "-f",
        "json",
        "--verbose",
        "False",
        "--logprob_threshold",
        "0",
        "--best_of",
        "1",
    )
    ok(run(*common, "-o", tmp_path / "a", "--temperature_increment_on_fallback", "0.45"))
    assert json_temperatures(tmp_path / "a", "ljspeech_LJ001-0002") == {0.9}
    ok(
        run(
            *common,
            "-o",
            tmp_path / "b",
            "--temperature",
            "0.2",
            "--temperature_increment_on_fallback",
            "None",
        )
    )
    assert json_temperatures(tmp_path / "b", "ljspeech_LJ001-0002") == {0.2}


@pytest.mark.parametrize(
    "clip, option, value",
    [
        # "that evening the two men" loses its comma
        ("cmuarctic_aew_arctic_a0003.wav", "length_penalty", 0.0),
        # English-only tiny.en on Japanese: candidates finish late
        ("picovoice_ja_test_ja.wav", "patience", 3.0),
    ],
)
def test_beam_options_reach_transcribe(
    tmp_path, tiny_en_ct2_dir, tiny_en_model, clip, option, value
):
    """`--beam_size 2` with `--length_penalty 0` or `--patience 3`, each on a clip where it changes
    the transcript: the JSON is the Python API's with the same options, not beam 2's without the
    option."""
    options = {"beam_size": 2, "temperature": 0.0, option: value}
    ok(
        run(
            DATA / clip,
            "--model",
            tiny_en_ct2_dir,
            "-o",
            tmp_path,
            "-f",
            "json",
            "--verbose",
            "False",
            "--beam_size",
            "2",
            f"--{option}",
            str(value),
            "--temperature_increment_on_fallback",
            "None",
        )
    )
    written = json.loads((tmp_path / clip).with_suffix(".json").read_text())
    assert written == json.loads(
        json.dumps(tiny_en_model.transcribe(str(DATA / clip), **options).to_dict())
    )
    plain = tiny_en_model.transcribe(str(DATA / clip), beam_size=2, temperature=0.0).to_dict()
    assert [s["tokens"] for s in written["segments"]] != [s["tokens"] for s in plain["segments"]]


@pytest.mark.parametrize(
    "temperature, increment",
    [
        (0.0, 0.2),
        (0.0, 0.3),
        (0.0, 0.4),
        (0.1, 0.3),
        (0.0, 0.25),
        (0.5, 0.5),
        (1.0, 0.2),
        (0.0, 0.6),
        (0.5, 0.7),
        (0.3, 0.4),
    ],
)
def test_temperature_schedule_is_openais(temperature, increment):
    """cli._temperatures against openai's CLI: tuple(np.arange(temperature, 1.0 + 1e-6,
    increment))."""
    from argparse import Namespace

    from whisperms.cli import _temperatures

    expected = tuple(np.arange(temperature, 1.0 + 1e-6, increment))
    got = _temperatures(
        Namespace(temperature=temperature, temperature_increment_on_fallback=increment)
    )
    assert got == pytest.approx(expected)


def test_decoding_options_reach_transcribe(tmp_path, tiny_en_ct2_dir, tiny_en_model):
    """`--initial_prompt`, `--clip_timestamps`, `--beam_size None` (greedy), `--suppress_tokens`,
    `--condition_on_previous_text`, and with `--word_timestamps True` empty `--prepend_punctuations`
    and `--append_punctuations`, on JFK: the JSON is the Python API's with the same options, which
    differs from the defaults' (punctuated by the prompt, cut to the clip, one word never emitted,
    commas as words of their own)."""
    (country,) = DecodingTask(tiny_en_model, DecodingOptions()).tokenizer.encode(" country")
    options = dict(
        initial_prompt="And so, my fellow Americans, ask not.",
        clip_timestamps="0,8",
        temperature=0.0,
        condition_on_previous_text=False,
        suppress_tokens=f"-1,{country}",
        word_timestamps=True,
        prepend_punctuations="",
        append_punctuations="",
    )
    ok(
        run(
            JFK,
            "--model",
            tiny_en_ct2_dir,
            "-o",
            tmp_path,
            "-f",
            "json",
            "--verbose",
            "False",
            "--initial_prompt",
            options["initial_prompt"],
            "--clip_timestamps",
            "0,8",
            "--beam_size",
            "None",
            "--temperature_increment_on_fallback",
            "None",
            "--condition_on_previous_text",
            "False",
            f"--suppress_tokens={options['suppress_tokens']}",
            "--word_timestamps",
            "True",
            "--prepend_punctuations=",
            "--append_punctuations=",
        )
    )
    written = json.loads((tmp_path / "jfk_inaugural_1961.json").read_text())
    expected = tiny_en_model.transcribe(str(JFK), **options).to_dict()
    assert written == json.loads(json.dumps(expected))
    assert "," in written["text"] and "ask what you can do" not in written["text"]
    assert "," in [w["word"] for s in written["segments"] for w in s["words"]]
    assert (
        " country" not in written["text"] and " country" in tiny_en_model.transcribe(str(JFK)).text
    )
    assert all(country not in s["tokens"] for s in written["segments"])
    assert all(s["end"] <= 8.0 for s in written["segments"])


def test_faster_whisper_options_reach_transcribe(tmp_path, tiny_en_ct2_dir, tiny_en_model):
    """faster-whisper's `--repetition_penalty`, `--no_repeat_ngram_size`, `--hotwords` and
    `--max_new_tokens` (beam 5, the CLI's default): the JSON is the Python API's with the same
    options; the penalty, the n-gram rule and the hotwords each change JFK's text."""
    options = dict(
        repetition_penalty=1.5, no_repeat_ngram_size=2, hotwords="Kennedy", max_new_tokens=40
    )
    ok(
        run(
            JFK,
            "--model",
            tiny_en_ct2_dir,
            "-o",
            tmp_path,
            "-f",
            "json",
            "--verbose",
            "False",
            *[part for name, value in options.items() for part in (f"--{name}", str(value))],
        )
    )
    written = json.loads((tmp_path / "jfk_inaugural_1961.json").read_text())
    expected = tiny_en_model.transcribe(str(JFK), beam_size=5, best_of=5, **options).to_dict()
    assert written == json.loads(json.dumps(expected))
    plain = tiny_en_model.transcribe(str(JFK), beam_size=5, best_of=5).text
    for name in ("repetition_penalty", "no_repeat_ngram_size", "hotwords"):
        one = tiny_en_model.transcribe(str(JFK), beam_size=5, best_of=5, **{name: options[name]})
        assert one.text != plain, name


@pytest.mark.xfail(
    strict=True,
    reason="argparse reads '-1,1499' after --suppress_tokens as an option, not its value "
    "(openai's CLI too): only --suppress_tokens=-1,1499 works",
)
def test_suppress_tokens_with_minus_one_and_more_ids(tmp_path, tiny_en_ct2_dir):
    """README's --suppress_tokens: "comma-separated token ids; -1: most symbols" - so `-1,1499`
    written as usual."""
    ok(
        run(
            SHORT,
            "--model",
            tiny_en_ct2_dir,
            "-o",
            tmp_path,
            "-f",
            "txt",
            "--suppress_tokens",
            "-1,1499",
        )
    )


# --- writer options
# --------------------------------------------------------------------------------------------------


def written_by_writers(folder, stem, fmt, **options):
    """What whisperms.writers makes of the run's own JSON with the given options."""
    result = json.loads((folder / f"{stem}.json").read_text())
    target = folder / "expected"
    target.mkdir(exist_ok=True)
    get_writer(fmt, str(target))(result, f"{stem}.wav", **options)
    return (target / f"{stem}.{fmt}").read_text()


def cue_texts(srt):
    return [cue.split("\n", 2)[2] for cue in srt.strip().split("\n\n")]


def test_word_options_reach_the_writers(tmp_path, tiny_en_ct2_dir):
    """`--word_timestamps True --highlight_words True --max_line_width 24 --max_line_count 2`: words
    in the JSON, and srt/vtt exactly as the writers make them from that JSON with those options:
    underlined words, no line over 24 characters, at most 2 lines per cue."""
    options = dict(highlight_words=True, max_line_width=24, max_line_count=2)
    ok(
        run(
            JFK,
            "--model",
            tiny_en_ct2_dir,
            "-o",
            tmp_path,
            "-f",
            "all",
            "--verbose",
            "False",
            "--word_timestamps",
            "True",
            "--highlight_words",
            "True",
            "--max_line_width",
            "24",
            "--max_line_count",
            "2",
        )
    )
    result = json.loads((tmp_path / "jfk_inaugural_1961.json").read_text())
    assert (
        all(s["words"] for s in result["segments"])
        and len([w for s in result["segments"] for w in s["words"]]) > 15
    )
    for fmt in ("srt", "vtt"):
        written = (tmp_path / f"jfk_inaugural_1961.{fmt}").read_text()
        assert written == written_by_writers(tmp_path, "jfk_inaugural_1961", fmt, **options)
    srt = (tmp_path / "jfk_inaugural_1961.srt").read_text()
    assert "<u>" in srt
    for text in cue_texts(srt):
        lines = text.splitlines()
        assert len(lines) <= 2 and all(len(re.sub("</?u>", "", line)) <= 24 for line in lines), text


def test_max_words_per_line_reaches_the_writers(tmp_path, tiny_en_ct2_dir):
    ok(
        run(
            JFK,
            "--model",
            tiny_en_ct2_dir,
            "-o",
            tmp_path,
            "-f",
            "all",
            "--verbose",
            "False",
            "--word_timestamps",
            "True",
            "--max_words_per_line",
            "3",
        )
    )
    srt = (tmp_path / "jfk_inaugural_1961.srt").read_text()
    assert srt == written_by_writers(tmp_path, "jfk_inaugural_1961", "srt", max_words_per_line=3)
    texts = cue_texts(srt)
    assert len(texts) > 6 and all(len(text.split()) <= 3 for text in texts), texts
