"""The `whisperms` command run for real in a subprocess: output files parsed back, exit codes,
one-line errors."""

import argparse
import fcntl
import io
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest
from user_env import user_env

from conftest import DATA

JFK = DATA / "jfk_inaugural_1961.flac"
SHORT = DATA / "ljspeech_LJ001-0002.wav"
# how lines of MindSpore's own C++ logger begin (written to fd 2 when its runtime fails)
MINDSPORE_LOG = ("[ERROR] ", "[WARNING] ")
SRT_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2}),(\d{3}) --> (\d{2}):(\d{2}):(\d{2}),(\d{3})$")


def run(*args, cwd=None, env=None):
    """The CLI in a subprocess, with the session's environment (its own caches; warnings not
    silenced)."""
    return subprocess.run(
        [sys.executable, "-m", "whisperms", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env=user_env(env),
    )


def seconds(h, m, s, ms):
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def assert_clean_error(proc, status, *fragments):
    assert proc.returncode == status, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("whisperms: error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in errors[0]


@pytest.fixture(scope="module")
def all_formats(tmp_path_factory, tiny_en_ct2_dir):
    out = tmp_path_factory.mktemp("cli")
    proc = run(
        JFK,
        SHORT,
        "--model",
        tiny_en_ct2_dir,
        "--output_dir",
        out,
        "--output_format",
        "all",
        "--verbose",
        "False",
    )
    assert proc.returncode == 0, proc.stderr
    return out


def test_all_formats_for_several_files(all_formats):
    for stem in ("jfk_inaugural_1961", "ljspeech_LJ001-0002"):
        assert sorted(p.name for p in all_formats.glob(stem + ".*")) == [
            f"{stem}.{ext}" for ext in ("json", "srt", "tsv", "txt", "vtt")
        ]
    assert not list(all_formats.glob(".*partial"))


def test_srt_and_vtt_timestamps(all_formats):
    srt = (all_formats / "jfk_inaugural_1961.srt").read_text().strip().split("\n\n")
    times = []
    for number, cue in enumerate(srt, start=1):
        lines = cue.splitlines()
        assert lines[0] == str(number)
        match = SRT_TIME.match(lines[1])
        assert match, lines[1]
        start, end = seconds(*match.groups()[:4]), seconds(*match.groups()[4:])
        assert start <= end <= 11.0
        times += [start, end]
    assert times == sorted(times)
    vtt = (all_formats / "jfk_inaugural_1961.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n")
    assert re.findall(r"\d{2}:\d{2}\.\d{3} --> \d{2}:\d{2}\.\d{3}", vtt)


def test_json_matches_python_api(all_formats, tiny_en_model):
    written = json.loads((all_formats / "jfk_inaugural_1961.json").read_text())
    # the CLI's defaults are openai's CLI defaults (beam 5, best_of 5), not transcribe()'s greedy
    # default
    expected = tiny_en_model.transcribe(str(JFK), beam_size=5, best_of=5).to_dict()
    assert written["text"] == expected["text"] and written["language"] == "en"
    assert [s["tokens"] for s in written["segments"]] == [s["tokens"] for s in expected["segments"]]


def test_tsv_integer_milliseconds(all_formats):
    lines = (all_formats / "jfk_inaugural_1961.tsv").read_text().splitlines()
    assert lines[0] == "start\tend\ttext"
    for line in lines[1:]:
        start, end, text = line.split("\t")
        assert start.isdigit() and end.isdigit() and int(start) <= int(end) and text


def test_missing_file_fails_alone(tmp_path, tiny_en_ct2_dir):
    proc = run(
        tmp_path / "missing.wav", SHORT, "--model", tiny_en_ct2_dir, "-o", tmp_path, "-f", "txt"
    )
    assert_clean_error(proc, 1, "missing.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ljspeech_LJ001-0002.txt"]
    # --verbose True (the default) prints segments; stderr is a pipe here, so no progress bar
    assert SEGMENT_LINE.match(proc.stdout.splitlines()[0]) and not BAR.search(proc.stderr), (
        proc.stderr
    )


def test_undecodable_file(tmp_path, tiny_en_ct2_dir):
    bad = tmp_path / "garbage.mp3"
    bad.write_text("not audio at all\n" * 50)
    out = tmp_path / "out"
    proc = run(bad, "--model", tiny_en_ct2_dir, "-o", out, "-f", "srt")
    assert_clean_error(proc, 1, "garbage.mp3")
    assert not out.exists() or not list(out.iterdir())


def test_usage_errors(tmp_path, tiny_en_ct2_dir):
    assert_clean_error(
        run(SHORT, "--model", tiny_en_ct2_dir, "--language", "xx", "-o", tmp_path), 2, "xx"
    )
    assert_clean_error(run(SHORT, "--model", "no-such-model", "-o", tmp_path), 1, "no-such-model")
    assert not list(tmp_path.iterdir())


def test_convert_subcommand(tmp_path, tiny_en_ct2_dir):
    proc = run("convert", tiny_en_ct2_dir, tmp_path / "tiny.en", "--dtype", "float16")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "tiny.en" / "config.json").read_text())["name"] == "tiny.en"
    assert_clean_error(run("convert", tmp_path / "nowhere", tmp_path / "x"), 1, "nowhere")


# --- --threads
# --------------------------------------------------------------------------------------------------
def test_threads(tmp_path, tiny_en_ct2_dir, all_formats):
    proc = run(SHORT, "--model", tiny_en_ct2_dir, "-o", tmp_path, "-f", "txt", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert "cores 1" in proc.stderr  # the runtime line: load_model got threads=1
    expected = (all_formats / "ljspeech_LJ001-0002.txt").read_text()
    assert (tmp_path / "ljspeech_LJ001-0002.txt").read_text() == expected and expected.strip()
    out = tmp_path / "out"
    assert_clean_error(
        run(SHORT, "--model", tiny_en_ct2_dir, "-o", out, "--threads", "-1"), 2, "--threads", "-1"
    )
    assert not out.exists()
    # more than the cores this process may use: those cores, with a warning (MindSpore made a
    # kernel thread per thread asked for)
    cores = len(os.sched_getaffinity(0))
    proc = run(SHORT, "--model", tiny_en_ct2_dir, "-o", out, "-f", "txt", "--threads", "1000")
    assert proc.returncode == 0, proc.stderr
    assert f"cores {cores}" in proc.stderr
    assert [line for line in proc.stderr.splitlines() if "warning" in line] == [
        f"whisperms: warning: 1000 threads asked for, and this process may use {cores} cores: "
        f"using {cores}"
    ]
    assert (out / "ljspeech_LJ001-0002.txt").read_text() == expected


# --- progress bar
# --------------------------------------------------------------------------------------------------
BAR = re.compile(r"(\d+\.\d)/(\d+\.\d) s audio")
SEGMENT_LINE = re.compile(r"^\[(\d{2}:)?\d{2}:\d{2}\.\d{3} --> (\d{2}:)?\d{2}:\d{2}\.\d{3}\]  ?\S")


class Stream:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


def test_progress_rule():
    from whisperms.cli_args import show_progress

    assert show_progress(True, Stream(True))
    # --verbose False prints nothing, on a terminal too
    assert not show_progress(False, Stream(True))
    assert not show_progress(True, Stream(False))  # pipes, files, subprocesses of tests
    assert not show_progress(True, object())  # a stream without isatty
    assert not show_progress(True, io.StringIO())


def bar_counts(text):
    counts = [(float(done), float(total)) for done, total in BAR.findall(text)]
    assert counts, text
    return [done for done, _ in counts], {total for _, total in counts}


def test_python_api_bar_follows_openai(tiny_en_model, capsys):
    """verbose=False: a bar over the audio's seconds that rises window by window to the total; None:
    silence."""
    sonnet = DATA / "librivox_shakespeare-sonnet-001.mp3"  # 53.3 s: two windows at least
    result = tiny_en_model.transcribe(str(sonnet), verbose=False)
    out, err = capsys.readouterr()
    assert out == "" and result.text
    done, totals = bar_counts(err)
    assert totals == {53.3}
    assert done == sorted(done) and done[-1] == 53.3 and any(0 < d < 53.3 for d in done), err
    assert "100%" in err

    tiny_en_model.transcribe(str(SHORT), verbose=None)
    assert capsys.readouterr() == ("", "")
    tiny_en_model.transcribe(str(SHORT), verbose=True)
    out, err = capsys.readouterr()
    assert SEGMENT_LINE.match(out.splitlines()[0]) and not BAR.search(err)


def run_on_terminal(*args):
    """The CLI with stderr on a pseudo-terminal (stdout a pipe): returns (status, stdout, what the
    terminal got)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "whisperms", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        env=user_env(),
    )
    os.close(slave)
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other end is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    stdout, _ = proc.communicate(timeout=600)
    reader.join(timeout=60)
    os.close(master)
    return proc.returncode, stdout.decode(), b"".join(chunks).decode(errors="replace")


def test_cli_bar_on_a_terminal(tmp_path, tiny_en_ct2_dir):
    status, out, terminal = run_on_terminal(
        JFK, "--model", tiny_en_ct2_dir, "-o", tmp_path, "-f", "txt"
    )
    assert status == 0, terminal
    assert "whisperms: tiny.en on CPU" in terminal
    done, totals = bar_counts(terminal)
    assert totals == {11.0} and done[-1] == 11.0 and "100%" in terminal
    lines = out.splitlines()  # segments still printed, on stdout, whole lines
    assert lines and all(SEGMENT_LINE.match(line) for line in lines), out
    texts = [line.split("] ", 1)[1].strip() for line in lines]
    assert (
        texts == (tmp_path / "jfk_inaugural_1961.txt").read_text().splitlines()
        and "Americans" in texts[0]
    )


def test_cli_verbose_false_on_a_terminal_prints_nothing(tmp_path, tiny_en_ct2_dir):
    status, out, terminal = run_on_terminal(
        SHORT, "--model", tiny_en_ct2_dir, "-o", tmp_path, "-f", "txt", "--verbose", "False"
    )
    assert status == 0, terminal
    assert out == "" and not BAR.search(terminal) and "%|" not in terminal
    assert (tmp_path / "ljspeech_LJ001-0002.txt").read_text().strip()


def test_cold_cache_prints_only_whisperms_lines(tmp_path, tiny_en_ct2_dir):
    """A first-ever run (empty graph and kernel caches): --verbose True prints the runtime line on
    stderr and the segments on stdout and nothing else; --verbose False prints nothing at all.
    Warnings are not silenced here, so a fallback's warning (graph cache, fusion) fails this test
    too, and so does MindSpore's kernel generator printing on stdout (it did, once per fused kernel,
    until fusion.py pointed AKG_WHITE_LIST_PATH at its config). The quiet run has no home folder."""
    cold = {"XDG_CACHE_HOME": str(tmp_path / "cold-cache")}
    proc = run(SHORT, "--model", tiny_en_ct2_dir, "-o", tmp_path, "-f", "txt", env=cold)
    assert proc.returncode == 0, proc.stderr
    # the run did use the empty cache
    assert (tmp_path / "cold-cache" / "whisperms" / "graphs").is_dir()
    (runtime,) = proc.stderr.splitlines()  # the runtime line alone
    assert runtime.startswith(
        "whisperms: tiny.en on CPU, float32, attention eager, conv "
    ) and runtime.endswith(" all")
    assert [line for line in proc.stdout.splitlines() if not SEGMENT_LINE.match(line)] == [], (
        proc.stdout
    )
    # Kernels the cache holds cut short (MindSpore writes their descriptions in place: a process
    # killed part way, a full disk): each later run warned "fused compile failed" and ran those
    # graphs unfused, for good. They are generated again, without a word.
    descriptions = list((tmp_path / "cold-cache").rglob("akg_kernel_meta/*.json"))
    assert descriptions
    for path in descriptions:
        path.chmod(0o600)
        path.write_bytes(path.read_bytes()[:10])
        os.utime(path, (path.stat().st_mtime - 3600,) * 2)  # from an earlier run
    again = run(SHORT, "--model", tiny_en_ct2_dir, "-o", tmp_path, "-f", "txt", env=cold)
    assert again.returncode == 0 and again.stderr.splitlines() == [runtime], again.stderr
    assert again.stdout == proc.stdout
    # those the run used generated again, the others removed
    regenerated = [path for path in descriptions if path.exists()]
    assert regenerated and all(json.loads(path.read_text()) for path in regenerated)
    # Again where the user has no home folder (HOME unset, no passwd entry: a container's arbitrary
    # uid, `env -i`), which was a traceback: the caches are off, the kernels generated in a
    # temporary folder removed at exit.
    script = tmp_path / "no_home.py"
    script.write_text(
        "import pwd, runpy, sys\n"
        "def unknown(uid):\n"
        "    raise KeyError(f'getpwuid(): uid not found: {uid}')\n"
        "pwd.getpwuid = unknown\n"
        "sys.argv[0] = 'whisperms'\n"
        "runpy.run_module('whisperms', run_name='__main__', alter_sys=True)\n"
    )
    cache_settings = ("HOME", "XDG_CACHE_HOME", "WHISPERMS_GRAPH_CACHE", "MS_COMPILER_CACHE_PATH")
    env = {k: v for k, v in user_env().items() if k not in cache_settings}
    (tmp_path / "tmp").mkdir()
    env["TMPDIR"] = str(tmp_path / "tmp")
    out = tmp_path / "no-home"
    args = [SHORT, "--model", tiny_en_ct2_dir, "-o", out, "-f", "txt", "--verbose", "False"]
    quiet = subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert quiet.returncode == 0 and (quiet.stdout, quiet.stderr) == ("", "")
    assert (out / f"{SHORT.stem}.txt").read_text().strip()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_help_gives_every_default():
    """--help names each option's default, as openai's CLI does (None: the help says what unset
    means)."""
    from whisperms.cli_args import transcribe_parser

    parser = transcribe_parser()
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        if not action.option_strings or action.default in (None, argparse.SUPPRESS):
            continue
        shown = f"(default: {action.default})" in text or "(default " in (action.help or "")
        assert shown, action.option_strings[0]
    assert "(None: greedy) (default: 5)" in text


def test_readme_options_table_matches_the_parser():
    """README's options table lists every transcription option once, with the default the parser
    really has."""
    from whisperms.cli_args import transcribe_parser

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(--\w+)`(?:, `-\w`)? \| `(.*?)` \| .+ \|$", readme, re.M)
    table = dict(rows)
    options = [a for a in transcribe_parser()._actions if a.option_strings and a.dest != "help"]
    assert len(rows) == len(table) == len(options)
    for action in options:
        assert table[action.option_strings[0]] == str(action.default), action.option_strings[0]


@pytest.mark.parametrize(
    ("module", "args", "prog"),
    [
        ("whisperms.cli", [str(SHORT), "-o", "OUT"], "whisperms"),
        ("whisperms.cli", ["convert", "a", "b"], "whisperms"),
        ("whisperms.server", [], "whisperms-server"),
        ("whisperms.bulk", [str(SHORT), "-o", "OUT"], "whisperms-bulk"),
    ],
)
def test_a_deleted_current_folder_is_one_line(tmp_path, module, args, prog):
    """Started in a folder that was then deleted: MindSpore's import asked for it and crashed the
    interpreter (status 134, a hundred lines), the CLI's own paths gave a traceback."""
    here = tmp_path / "gone"
    here.mkdir()
    args = [arg.replace("OUT", str(tmp_path / "out")) for arg in args]
    code = (
        f"import os, sys; os.rmdir(os.getcwd()); from {module} import main; "
        f"sys.exit(main({args!r}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=here, timeout=300,
        env=user_env({"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}),  # this package
    )  # fmt: skip
    assert (run.returncode, run.stderr.splitlines()) == (
        1,
        [
            f"{prog}: error: the current folder no longer exists (deleted, or moved away): change "
            "to one that does"
        ],
    )
    assert not (tmp_path / "out").exists()


def test_out_of_memory_is_one_line(tmp_path, tiny_en_ct2_dir):
    """More rows than the machine holds (here its address space limited to 7 GiB: 32 files
    decoded together, 128 beams each): one line and status 1, not a traceback ending in numpy's
    MemoryError; nothing written. Where MindSpore's allocation fails first (its own log lines
    before ours), the same line, and the process ends: its failure was taken for a failed fused
    compile, and the process then aborted (status 127) or hung at exit. (A beam far too wide,
    40000, is refused as an option now.)"""
    import resource

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (7 << 30, 7 << 30))

    out = tmp_path / "out"
    refused = subprocess.Popen(
        [sys.executable, "-m", "whisperms", str(SHORT), "--model", str(tiny_en_ct2_dir)]
        + ["--beam_size", "40000", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=user_env(),
    )  # fmt: skip
    files = []
    for index in range(32):
        files.append(tmp_path / f"clip{index}.wav")
        shutil.copy(SHORT, files[-1])
    args = [*files, "--model", tiny_en_ct2_dir, "--beam_size", "128", "--batch_size", "32"]
    run = subprocess.run(
        [sys.executable, "-m", "whisperms", *map(str, args), "-o", str(out), "--verbose", "False"],
        capture_output=True, text=True, timeout=300, env=user_env(), preexec_fn=limited,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    ours = [line for line in run.stderr.splitlines() if not line.startswith(MINDSPORE_LOG)]
    assert len(ours) == 1 and ours[0].startswith("whisperms: error: out of memory: "), ours
    assert not out.exists() or not any(out.iterdir())
    assert (refused.wait(timeout=300), refused.stderr.read().splitlines()) == (
        2,
        ["whisperms: error: --beam_size must be an integer from 1 to 128 or None, got 40000"],
    )


# The CLI with a bug put into the txt writer: the transcript of the JFK clip is half written, then
# a KeyError, as the srt writer once raised on an empty first segment.
_FAULTY_WRITER = """
import sys
from whisperms import writers
from whisperms.cli import main

write_result = writers.WriteTXT.write_result

def faulty(self, result, file, options=None, **kwargs):
    if "your country" in result["text"]:
        file.write("half a transcript")
        raise KeyError("words")
    return write_result(self, result, file, options, **kwargs)

writers.WriteTXT.write_result = faulty
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("mode", [[], ["--batch_size", "2"]], ids=["sequential", "batched"])
def test_a_failure_no_check_foresaw_is_that_files_one_line(tmp_path, tiny_en_ct2_dir, mode):
    """A bug met on one file: one line naming the file and the error, status 1, nothing of that
    file written, and the next file still transcribed and written (as openai-whisper's CLI skips
    such a file, and as the batched mode kept an input's unforeseen failure to that input); it was a
    traceback that ended the run."""
    out = tmp_path / "out"
    args = [JFK, SHORT, "--model", tiny_en_ct2_dir, "-o", out, "-f", "txt", "--verbose", "False"]
    proc = subprocess.run(
        [sys.executable, "-c", _FAULTY_WRITER, *map(str, args + mode)],
        capture_output=True, text=True, timeout=600, env=user_env(),
    )  # fmt: skip
    assert (proc.returncode, proc.stderr.splitlines()) == (
        1,
        [f"whisperms: error: {JFK}: cannot transcribe it: KeyError: 'words'"],
    )
    assert sorted(p.name for p in out.iterdir()) == ["ljspeech_LJ001-0002.txt"]


@pytest.mark.skipif(os.geteuid() != 0, reason="access() refuses /proc first for other users")
def test_an_output_folder_that_takes_no_files_is_refused_before_decoding(tmp_path):
    """/proc passes os.access as root and takes no file: it was found after the decode."""
    run_ = run(SHORT, "--model", "no-such-model-needed", "-o", "/proc")
    lines = run_.stderr.splitlines()
    assert run_.returncode == 1 and len(lines) == 1, lines
    # the reason is the kernel's (ENOENT here)
    assert lines[0].startswith(
        "whisperms: error: output folder /proc is not writable: creating a file there failed ("
    )


def test_a_file_name_with_a_line_break_is_still_one_line(tmp_path):
    missing = tmp_path / "bad\nname.wav"
    run_ = run(missing, "--model", "no-such-model-needed", "-o", tmp_path)
    assert (run_.returncode, run_.stderr.splitlines()) == (
        1,
        [f"whisperms: error: audio file not found: {tmp_path}/bad\\nname.wav"],
    )
