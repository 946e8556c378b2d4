"""The command's output handling where the world gets in the way: inputs that would overwrite each
other's transcripts, outputs that are symbolic links or too long a name, a standard output that
is closed or cannot encode the text, standard input as an input (-), and Ctrl-C. Real CLI
processes, tiny.en (base for accents)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
from user_env import default_sigint, user_env

from conftest import DATA

SHORT = DATA / "ljspeech_LJ001-0002.wav"  # " in being comparatively modern."
OTHER = DATA / "ljspeech_LJ001-0001.wav"


def command(*args):
    return [sys.executable, "-m", "whisperms", *map(str, args)]


def run(*args, env=None, cwd=None):
    proc = subprocess.run(
        command(*args), capture_output=True, text=True, timeout=600, env=user_env(env), cwd=cwd
    )
    return proc.returncode, proc.stdout.splitlines(), proc.stderr.splitlines()


def test_clashing_names_links_and_long_names(tmp_path, tiny_en_ct2_dir):
    """b/x.wav would overwrite a/x.wav's x.txt (openai's CLI does so silently): it fails alone,
    without being decoded; a file given twice is transcribed once; a 251-byte name whose .json
    would be too long fails before decoding (four formats were written, then the fifth failed);
    an existing transcript that is a symbolic link is written through, as open() would."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x.wav").write_bytes(SHORT.read_bytes())
    (b / "x.wav").write_bytes(OTHER.read_bytes())
    long = tmp_path / ("s" * 251 + ".wav")
    long.write_bytes(SHORT.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "kept.txt"
    target.write_text("old\n")
    (out / "x.txt").symlink_to(target)
    status, _, stderr = run(
        a / "x.wav", b / "x.wav", a / "x.wav", long, "--model", tiny_en_ct2_dir, "-o", out,
        "-f", "all", "--verbose", "False",
    )  # fmt: skip
    e = "whisperms: error: "
    long_json = out / ("s" * 251 + ".json")
    assert status == 1
    assert stderr == [
        e + f"{b / 'x.wav'}: not transcribed: its transcripts would overwrite {a / 'x.wav'}'s",
        e + f"{long}: cannot write {long_json}: its name is longer than the 255 bytes the file "
        "system takes",
    ]
    assert (out / "x.txt").is_symlink() and target.read_text() == "in being comparatively modern.\n"
    assert sorted(p.name for p in out.iterdir()) == [
        f"x.{f}" for f in "json srt tsv txt vtt".split()
    ]


@pytest.mark.parametrize("mode", [[], ["--batch_size", "8"]], ids=["sequential", "batched"])
def test_a_name_goes_to_the_first_input_written_under_it(tmp_path, tiny_en_ct2_dir, mode):
    """bad/x.wav is no audio and fails; good/x.wav, whose x.txt it would have overwritten, is
    transcribed then (it was refused as a clash, so neither was written). With both readable the
    first one written keeps the name, in the batched mode too (the second waits for it)."""
    bad, good, other = tmp_path / "bad", tmp_path / "good", tmp_path / "other"
    for folder in (bad, good, other):
        folder.mkdir()
    (bad / "x.wav").write_bytes(b"no audio here " * 100)
    (good / "x.wav").write_bytes(SHORT.read_bytes())
    (other / "x.wav").write_bytes(OTHER.read_bytes())
    base = ["--model", tiny_en_ct2_dir, "-f", "txt", "--verbose", "False", *mode]
    status, _, stderr = run(bad / "x.wav", good / "x.wav", *base, "-o", tmp_path / "one")
    assert (status, stderr) == (
        1,
        [
            f"whisperms: error: could not decode audio file {bad / 'x.wav'}: not a supported audio "
            "format, or corrupted"
        ],
    )
    assert (tmp_path / "one" / "x.txt").read_text() == "in being comparatively modern.\n"
    status, _, stderr = run(good / "x.wav", other / "x.wav", *base, "-o", tmp_path / "two")
    assert (status, stderr) == (
        1,
        [
            f"whisperms: error: {other / 'x.wav'}: not transcribed: its transcripts would "
            f"overwrite {good / 'x.wav'}'s"
        ],
    )
    assert (tmp_path / "two" / "x.txt").read_text() == "in being comparatively modern.\n"


@pytest.mark.parametrize("mode", [[], ["--batch_size", "8"]], ids=["sequential", "batched"])
def test_a_transcript_never_overwrites_an_input(tmp_path, tiny_en_ct2_dir, mode):
    """Audio files named talk.wav and talk.txt: talk.wav's transcript would be talk.txt, and
    talk.txt's its own name. Both were written over the audio; now neither is, each one line, and
    an input whose transcripts are elsewhere is written."""
    audio = {"talk.wav": SHORT, "talk.txt": OTHER, "clip.flac": SHORT}
    for name, source in audio.items():
        (tmp_path / name).write_bytes(source.read_bytes())
    inputs = [tmp_path / name for name in audio]
    args = [*inputs, "--model", tiny_en_ct2_dir, "-f", "txt", "-o", tmp_path, *mode]
    status, _, stderr = run(*args, "--verbose", "False")
    assert (status, stderr) == (
        1,
        [
            f"whisperms: error: {tmp_path / 'talk.wav'}: cannot write {tmp_path / 'talk.txt'}: it "
            "is an input of this run",
            f"whisperms: error: cannot write {tmp_path / 'talk.txt'}: it is the audio input itself",
        ],
    )
    for name, source in audio.items():
        assert (tmp_path / name).read_bytes() == source.read_bytes()
    assert (tmp_path / "clip.txt").read_text() == "in being comparatively modern.\n"


def test_zero_line_limits_mean_none_as_in_openai(tmp_path, tiny_en_ct2_dir):
    """openai's writers read 0 as "no limit" and its CLI takes it; negative values are refused."""
    base = ["--model", tiny_en_ct2_dir, "-f", "srt", "--word_timestamps", "True"]
    status, _, stderr = run(SHORT, *base, "-o", tmp_path / "plain")
    assert status == 0, stderr
    zeros = ["--max_line_width", "0", "--max_line_count", "0", "--max_words_per_line", "0"]
    status, _, stderr = run(SHORT, *base, *zeros, "-o", tmp_path / "zeros")
    assert status == 0 and [line for line in stderr if "warning" in line] == [], stderr
    name = SHORT.stem + ".srt"
    assert (tmp_path / "zeros" / name).read_text() == (tmp_path / "plain" / name).read_text()
    status, _, stderr = run(SHORT, *base, "--max_line_width", "-1", "-o", tmp_path / "neg")
    assert (status, stderr) == (
        2,
        ["whisperms: error: --max_line_width must be 0 (no limit) or more, got -1"],
    )


def test_a_closed_standard_output_stops_printing_not_the_transcription(tmp_path, tiny_en_ct2_dir):
    """`whisperms ... | head -1`: the pipe closes after a line; both transcripts are still
    written, with one warning (before: no transcript at all, or a traceback in the batched
    mode)."""
    for extra in ([], ["--batch_size", "2"]):
        out = tmp_path / f"out{len(extra)}"
        proc = subprocess.Popen(
            command(SHORT, OTHER, "--model", tiny_en_ct2_dir, "-o", out, "-f", "txt", *extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=user_env(),
        )
        proc.stdout.readline()
        proc.stdout.close()
        stderr = proc.stderr.read().splitlines()
        assert proc.wait(timeout=600) == 0, stderr
        assert [line for line in stderr if "warning" in line or "error" in line] == [
            "whisperms: warning: cannot print segments to standard output (Broken pipe); printing "
            "stopped"
        ]
        assert (out / (SHORT.stem + ".txt")).read_text() == "in being comparatively modern.\n"
        assert (out / (OTHER.stem + ".txt")).stat().st_size > 100


def test_a_closed_console_stops_printing_not_the_transcription(tmp_path, tiny_en_ct2_dir):
    """`whisperms ... 2>&1 | head -1`: stdout and stderr are one pipe, closed after a line. The
    warning that printing stopped could not be written either, and its error ended the run: no
    transcript, and status 0 (main took the broken pipe for `whisperms models | head`). Both
    transcripts are written now, and the status is 0."""
    for extra in ([], ["--batch_size", "2"]):
        out = tmp_path / f"out{len(extra)}"
        proc = subprocess.Popen(
            command(SHORT, OTHER, "--model", tiny_en_ct2_dir, "-o", out, "-f", "txt", *extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=user_env(),
        )
        proc.stdout.readline()
        proc.stdout.close()
        assert proc.wait(timeout=600) == 0
        assert (out / (SHORT.stem + ".txt")).read_text() == "in being comparatively modern.\n"
        assert (out / (OTHER.stem + ".txt")).stat().st_size > 100
    # a stderr that cannot take a line (a full disk): the lines are lost, not the transcripts (the
    # runtime line's error ended the run, status 1)
    out = tmp_path / "full"
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            command(SHORT, "--model", tiny_en_ct2_dir, "-o", out, "-f", "txt"),
            stdout=subprocess.DEVNULL, stderr=full, env=user_env(), timeout=600,
        )  # fmt: skip
    assert proc.returncode == 0
    assert (out / (SHORT.stem + ".txt")).read_text() == "in being comparatively modern.\n"


def test_a_standard_output_that_cannot_encode_the_text(tmp_path, base_ct2_dir):
    """An ASCII console and a French transcript: the accents are escaped on the console, the file
    keeps them (before: a UnicodeEncodeError traceback, and the next files never ran)."""
    clip = DATA / "picovoice_fr_test_fr.wav"
    status, stdout, stderr = run(
        clip, SHORT, "--model", base_ct2_dir, "--language", "fr", "-o", tmp_path, "-f", "txt",
        env={"PYTHONIOENCODING": "ascii"},
    )  # fmt: skip
    assert status == 0, stderr
    written = (tmp_path / (clip.stem + ".txt")).read_text(encoding="utf-8")
    assert any(ord(c) > 127 for c in written)
    printed = " ".join(line.split("] ", 1)[1] for line in stdout if line.startswith("["))
    assert printed.isascii() and "\\x" in printed
    assert (tmp_path / (SHORT.stem + ".txt")).is_file()


@pytest.mark.parametrize(
    "program, args",
    [
        ("whisperms", ["x.wav"]),
        ("whisperms-server", ["--port", "0"]),
        ("whisperms-bulk", ["x.wav", "-o", "out"]),
    ],
)
def test_ctrl_c_as_a_command_starts_is_one_line(tmp_path, program, args):
    """The installed commands, Ctrl-C a tenth of a second after they are started: while the
    whisperms package imports, before main() runs. It was a KeyboardInterrupt traceback (exit 1);
    now the command's one line and status 130. (Python's own start, the first ~30 ms, is before
    any of ours.)"""
    executable = os.path.join(os.path.dirname(sys.executable), program)
    assert os.access(executable, os.X_OK), f"{executable}: the project is not installed (pip -e .)"
    proc = subprocess.Popen(
        [executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=user_env(),
        preexec_fn=default_sigint,
    )
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert (proc.wait(timeout=120), proc.stderr.read().splitlines()) == (
        130,
        [f"{program}: interrupted"],
    )


def test_ctrl_c_ends_with_one_line_and_no_partial_file(tmp_path, tiny_en_ct2_dir):
    """Ctrl-C while MindSpore imports: one line, status 130 (it crashed the interpreter's
    shutdown with pages of MindSpore tracebacks, status 134). Ctrl-C while decoding: MindSpore
    turns it into SIGTERM, which ends the run with one line and status 143, no file half written
    (it was killed outright, its temporary file left behind)."""
    speech = np.concatenate([soundfile.read(DATA / n)[0] for n in [SHORT.name, OTHER.name] * 6])
    long = tmp_path / "long.wav"
    soundfile.write(long, speech, 22050)
    out = tmp_path / "out"
    # SIGINT at its default in the child, as a shell gives it: a test run in the background has
    # it ignored, and so would the child. At several moments after main() begins, while MindSpore
    # imports: within its C extension it came out as "ImportError: initialization failed" (a
    # traceback, status 1). Counted from main()'s start, told by the child (the installed
    # commands' start before main() is test_ctrl_c_as_a_command_starts_is_one_line's).
    started = "import sys; from whisperms.cli import main; print(flush=True); sys.exit(main())"
    for delay in (0.05, 0.2, 0.35):
        proc = subprocess.Popen(
            [sys.executable, "-c", started, long, "--model", tiny_en_ct2_dir, "-o", out],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=user_env(),
            preexec_fn=default_sigint,
        )
        assert proc.stdout.readline() == "\n"
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        assert (proc.wait(timeout=120), proc.stderr.read().splitlines()) == (
            130,
            ["whisperms: interrupted"],
        ), delay
    proc = subprocess.Popen(
        command(long, "--model", tiny_en_ct2_dir, "-o", out, "--verbose", "True"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=user_env(),
        preexec_fn=default_sigint,
    )
    assert proc.stdout.readline().startswith("[00:00.000 --> ")  # decoding
    proc.send_signal(signal.SIGINT)
    status = proc.wait(timeout=120)
    stderr = proc.stderr.read().splitlines()
    assert (status, stderr[-1]) in [
        (143, "whisperms: terminated"),
        (130, "whisperms: interrupted"),
    ], "\n".join(stderr[-40:])
    assert not any("Traceback" in line or "Error" in line for line in stderr), stderr
    assert not out.exists() or os.listdir(out) == []


def _raised(make):
    try:
        make()
    except BaseException as error:
        return error


def _during(first, then):
    def make():
        try:
            raise first
        except BaseException:
            raise then

    return make


def test_what_a_cleanup_raises_in_ctrl_c_place_still_ends_the_run_as_interrupted():
    """Ctrl-C inside tqdm's lock made tqdm raise "RuntimeError: cannot release un-acquired lock"
    while the KeyboardInterrupt was handled: a traceback and status 1 (seen in a clean-clone CI run
    of the test above). An error raised during or from Ctrl-C or SIGTERM is that signal's."""
    from whisperms.errors import Terminated, stopped_by

    lock = RuntimeError("cannot release un-acquired lock")
    assert stopped_by(_raised(_during(KeyboardInterrupt(), lock))) == "interrupted"
    assert stopped_by(_raised(_during(Terminated(), OSError("disk")))) == "terminated"
    initialization = ImportError("initialization failed")
    initialization.__cause__ = KeyboardInterrupt()
    assert stopped_by(initialization) == "interrupted"
    assert stopped_by(KeyboardInterrupt()) == "interrupted"
    assert stopped_by(_raised(_during(ValueError("x"), RuntimeError("y")))) is None
    assert stopped_by(RuntimeError("alone")) is None
    # MindSpore's C++ passing on a KeyboardInterrupt raised in Python code it called (seen in a
    # clean-clone CI run: Ctrl-C while whisperms-server imported MindSpore)
    assert stopped_by(RuntimeError("KeyboardInterrupt: <EMPTY MESSAGE>\n\nAt:\n ...")) == (
        "interrupted"
    )


_CTRL_C_IN_BLOCK = """
import os, signal, sys, time
from whisperms.errors import ctrl_c_ends
{handler}
with ctrl_c_ends("prog"):
    print("in", flush=True)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.5)
    print("went on", flush=True)
print("after", flush=True)
os.kill(os.getpid(), signal.SIGINT)
"""


@pytest.mark.parametrize(
    "handler, status, stdout, stderr",
    [
        # as from a shell: one line, at once, whatever the block was doing
        ("", 130, ["in"], ["prog: interrupted"]),
        # an application's handler is left as it is, inside the block and after it
        (
            "signal.signal(signal.SIGINT, lambda *_: print('own', flush=True))",
            0,
            ["in", "own", "went on", "after", "own"],
            [],
        ),
    ],
)
def test_ctrl_c_while_mindspore_imports_ends_the_process_at_once(handler, status, stdout, stderr):
    """While MindSpore imports and the model loads, Ctrl-C ends the command at once: raised as a
    KeyboardInterrupt it came out of MindSpore's C++ as "RuntimeError: KeyboardInterrupt", and the
    half-done import crashed the interpreter's shutdown (status -6, in a clean-clone CI run)."""
    proc = subprocess.run(
        [sys.executable, "-c", _CTRL_C_IN_BLOCK.format(handler=handler)],
        capture_output=True,
        text=True,
        env=user_env(),
        preexec_fn=default_sigint,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout.splitlines(), proc.stderr.splitlines()) == (
        status,
        stdout,
        stderr,
    )


def test_standard_input_as_openai_and_whisper_cpp_take_it(tmp_path, tiny_en_ct2_dir):
    """`-` is the audio piped in, its transcripts written under its name (-.txt), as openai's CLI
    (through ffmpeg) and whisper.cpp's take it: the text of the file read by name, sequentially and
    in a batch beside another file. Standard input that is a terminal (reading would wait for
    someone to type audio) or closed is one line before the model loads, not a wait for ever."""
    model = ("--model", tiny_en_ct2_dir, "--output_format", "txt", "--verbose", "False")
    status, _, stderr = run(SHORT, *model, "-o", tmp_path / "named")
    assert (status, stderr) == (0, [])
    named = (tmp_path / "named" / f"{SHORT.stem}.txt").read_text()
    assert "comparatively modern" in named
    for batch in ([], [OTHER, "--batch_size", "2"]):
        out = tmp_path / f"piped{len(batch)}"
        proc = subprocess.run(
            command("-", *batch, *model, "-o", out),
            input=SHORT.read_bytes(),
            capture_output=True,
            timeout=600,
            env=user_env(),
        )
        assert (proc.returncode, proc.stderr) == (0, b""), batch
        assert (out / "-.txt").read_text() == named, batch
    primary, secondary = os.openpty()
    try:
        terminal = subprocess.run(
            command("-", *model), stdin=secondary, capture_output=True, text=True, timeout=120
        )
    finally:
        os.close(primary)
        os.close(secondary)
    assert terminal.returncode == 1
    assert terminal.stderr.splitlines() == [
        "whisperms: error: -: standard input is a terminal: pipe the audio in "
        "(ffmpeg -i talk.mp4 -f wav - | whisperms -), or name a file"
    ]
    closed = subprocess.run(
        command("-", *model), preexec_fn=lambda: os.close(0), capture_output=True, text=True
    )
    assert (closed.returncode, closed.stderr.splitlines()) == (
        1,
        ["whisperms: error: -: standard input is closed: pipe the audio in, or name a file"],
    )
