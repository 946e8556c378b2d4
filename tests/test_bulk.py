"""whisperms-bulk (whisperms/bulk.py): a corpus on a real local Ray cluster of two workers, tiny.en.
Every readable file's output is what the batched mode writes for it alone, at its path below the
corpus folder; an unreadable file is one line and exit 1; a second run skips what is done."""

import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from user_env import default_sigint, user_env

from whisperms.batched import BatchedTranscriber
from whisperms.bulk_inputs import find_inputs, ignores_case, refuse_collisions
from whisperms.errors import AudioError, OptionsError

from conftest import DATA

pytest.importorskip("ray", reason="bulk extra missing: pip install -e .[test]")

# whisperms-bulk's defaults, the whisperms CLI's: what each output is compared with
CLI_DEFAULTS = dict(beam_size=5, best_of=5)
# (corpus path, dev clip): two files named one.wav in different folders
CORPUS = {
    "a/one.wav": "cmuarctic_aew_arctic_a0001.wav",
    "a/two.wav": "cmuarctic_aew_arctic_a0002.wav",
    "b/one.wav": "cmuarctic_aew_arctic_a0003.wav",
    "top.wav": "cmuarctic_unknown-speaker_arctic_a0010.wav",
    # a name whose bytes are not UTF-8 (Python keeps them as surrogates): it stopped the job
    os.fsdecode(b"b/caf\xe9.wav"): "ljspeech_LJ001-0002.wav",
}


def _bulk(*args, cwd=None, env=None, timeout=1200):
    return subprocess.run(
        [sys.executable, "-m", "whisperms.bulk", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env or user_env(),
    )


def _errors(run):
    return [line for line in run.stderr.splitlines() if line.startswith("whisperms-bulk: error:")]


def test_a_corpus_on_two_workers(tmp_path, tiny_en_ct2_dir, tiny_en_model):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    for name, clip in CORPUS.items():
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DATA / clip, corpus / name)
    (corpus / "b" / "broken.wav").write_text("not audio")
    options = ("--model", tiny_en_ct2_dir, "--workers", 2, "--cpus_per_worker", 1)
    # paths relative to the command's folder: the workers are started elsewhere
    run = _bulk("corpus", "-o", "out", *options, "--files_per_task", 2, cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    (error,) = _errors(run)
    assert error.count("broken.wav") == 1, error  # the path once, not twice
    assert "5 transcribed" in run.stderr and "1 failed" in run.stderr
    alone = BatchedTranscriber(tiny_en_model, **CLI_DEFAULTS)
    for name, clip in CORPUS.items():
        result = alone.run(str(DATA / clip))
        expected = "".join(s.text.strip() + "\n" for s in result.segments)
        assert (out / name).with_suffix(".txt").read_text() == expected, name
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == [
        ".whisperms-bulk-records.jsonl",  # what each output was made from (bulk_records.py)
        "a/one.txt",
        "a/two.txt",
        os.fsdecode(b"b/caf\xe9.txt"),
        "b/one.txt",
        "top.txt",
    ]

    again = _bulk(corpus, "-o", out, *options)
    assert again.returncode == 1
    assert "0 transcribed" in again.stderr and "5 done before" in again.stderr
    assert len(_errors(again)) == 1


def test_a_later_run_redoes_outputs_made_from_another_input(
    tmp_path, tiny_en_ct2_dir, tiny_en_model
):
    """A file counted as done when an output of its name existed: one folder's one.wav run into
    an -o after another folder's was skipped ("1 done before", exit 0) and never transcribed, as
    was a file changed since, or a run with another model. Outputs are recorded with what they were
    made from. Also: a failing file with a line break in its name was a two-line error."""
    out = tmp_path / "out"
    for folder, clip in (("a", CORPUS["a/one.wav"]), ("b", CORPUS["b/one.wav"])):
        (tmp_path / folder).mkdir()
        shutil.copy(DATA / clip, tmp_path / folder / "one.wav")
    (tmp_path / "b" / "bad\nname.wav").write_text("not audio")
    options = ("--model", tiny_en_ct2_dir, "--workers", 1, "--cpus_per_worker", 1)
    first = _bulk(tmp_path / "a", "-o", out, *options)
    assert first.returncode == 0 and "1 transcribed" in first.stderr, first.stderr
    second = _bulk(tmp_path / "b", "-o", out, *options)
    assert second.returncode == 1, second.stderr
    assert "1 transcribed" in second.stderr and "0 done before" in second.stderr, second.stderr
    (error,) = _errors(second)
    assert error.count("bad\\nname.wav") == 1, error
    result = BatchedTranscriber(tiny_en_model, **CLI_DEFAULTS).run(str(DATA / CORPUS["b/one.wav"]))
    expected = "".join(s.text.strip() + "\n" for s in result.segments)
    assert (out / "one.txt").read_text() == expected


def test_bad_input_is_one_line(tmp_path, tiny_en_ct2_dir):
    run = _bulk(tmp_path / "missing", "-o", tmp_path / "out", "--model", tiny_en_ct2_dir)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"whisperms-bulk: error: no such file or folder: {tmp_path / 'missing'}"
    ]
    run = _bulk(DATA / CORPUS["top.wav"], "-o", tmp_path / "out", "--model", tmp_path / "none")
    assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1
    assert "neither a checkpoint folder nor a model name" in run.stderr
    assert not (tmp_path / "out").exists()
    # an option that cannot work: status 2, as the whisperms CLI's (it was 1)
    for option, said in [
        (("--beam_size", 0), "beam_size must be an integer from 1 to 128"),
        (("--output_format", "docx"), "output_format must be one of "),
        (("--files_per_task", 0), "--files_per_task must be at least 1, got 0"),
        # argparse's own, one line as the whisperms CLI's (it printed its usage first)
        (("--workers", "two"), "argument --workers: invalid int value: 'two' (see whisperms-bulk"),
    ]:
        run = _bulk(
            DATA / CORPUS["top.wav"], "-o", tmp_path / "out", "--model", tiny_en_ct2_dir, *option
        )
        assert said in _one_error(run, status=2)


def _one_error(run, status=1):
    """The run failed with `status` (2: an option that cannot work, as the whisperms CLI's) and
    exactly one line on stderr, an error line: that line."""
    assert run.returncode == status, run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("whisperms-bulk: error: "), line
    return line


def test_inputs_writing_the_same_output_are_refused(tmp_path, tiny_en_ct2_dir):
    """Two inputs whose outputs would be one file (the extension is dropped, a file's output is
    its own name): refused before anything runs, naming both, instead of one overwriting the
    other and a later run counting both as done."""
    clip = DATA / CORPUS["top.wav"]
    for name in ("c1/a/one.wav", "c1/a/one.flac", "cA/one.wav", "cB/one.wav", "c2/B.wav"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, tmp_path / name)
    shutil.copy(clip, tmp_path / "c2" / "B.WAV")
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'cA/one.wav'}\n{tmp_path / 'cB/one.wav'}\n")
    clashes = {
        ("c1",): ["c1/a/one.flac", "c1/a/one.wav"],
        ("c2",): ["c2/B.WAV", "c2/B.wav"],
        ("cA", "cB"): ["cA/one.wav", "cB/one.wav"],
        ("@list.txt",): ["cA/one.wav", "cB/one.wav"],
    }
    for inputs, colliding in clashes.items():
        run = _bulk(*inputs, "-o", "out", "--model", tiny_en_ct2_dir, cwd=tmp_path)
        line = _one_error(run, status=2)
        assert "would write the same output" in line
        assert all(str(tmp_path / name) in line for name in colliding), line
        assert not (tmp_path / "out").exists()
    # the same file named twice the same way is one input, not a collision
    assert len(find_inputs([str(tmp_path / "cA"), str(tmp_path / "cA/one.wav")])) == 1


def test_names_differing_in_case_collide_where_the_output_folder_ignores_case(tmp_path):
    """One.wav and one.wav write One.txt and one.txt: two files here, one file on a file system
    that ignores case (macOS's and Windows' by default), where they are refused. This file
    system keeps case, and the probe says so and leaves nothing behind. (Not run on one that
    ignores case: none can be mounted here.)"""
    files = [("/c/One.wav", "One.wav"), ("/c/one.wav", "one.wav")]
    refuse_collisions(files)
    with pytest.raises(OptionsError, match="/c/One.wav and /c/one.wav"):
        refuse_collisions(files, fold_case=True)
    assert not ignores_case(str(tmp_path / "not" / "yet"))  # its nearest existing parent
    assert list(tmp_path.iterdir()) == []


def test_a_list_names_a_path_per_line_whatever_else_the_name_holds(tmp_path, monkeypatch):
    """A list's lines were split where str.splitlines splits (a form feed, U+2028 inside a name)
    and stripped (a name's leading space): one such name in a find-made list stopped the job. A
    line with spaces around a name that has none (typed by hand) still names it."""
    monkeypatch.chdir(tmp_path)
    names = [" lead.wav", "ff\x0cx.wav", "ls\u2028sep.wav", "plain.wav"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    listing = "\r\n".join(names[:3]) + "\n  plain.wav \n\n# a comment\n"
    (tmp_path / "list.txt").write_text(listing, encoding="utf-8")
    assert find_inputs(["@list.txt"]) == [(str(tmp_path / name), name) for name in names]


def test_lists_that_loop_or_are_not_text_and_nested_folders(tmp_path):
    """A list naming itself (or through another list) and one that is not UTF-8 text are one-line
    AudioErrors (a RecursionError and a UnicodeDecodeError traceback before); a byte-order mark
    is not part of the first path; a file in a folder and in its subfolder, both given, is
    transcribed once (it was twice, under two names)."""
    (tmp_path / "c" / "sub").mkdir(parents=True)
    for name in ("c/a.wav", "c/sub/b.wav"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "self.txt").write_text("@" + str(tmp_path / "other.txt") + "\n")
    (tmp_path / "other.txt").write_text("@" + str(tmp_path / "self.txt") + "\n")
    with pytest.raises(AudioError, match="names itself"):
        find_inputs(["@" + str(tmp_path / "self.txt")])
    (tmp_path / "latin.txt").write_bytes("caf\xe9.wav\n".encode("latin-1"))
    with pytest.raises(AudioError, match="latin.txt: not UTF-8 text"):
        find_inputs(["@" + str(tmp_path / "latin.txt")])
    # a path that is not there, named with the list's line (through a nested list: both)
    (tmp_path / "gaps.txt").write_text(f"# corpus\n{tmp_path / 'c' / 'a.wav'}\nmissing.wav\n")
    (tmp_path / "outer.txt").write_text("@" + str(tmp_path / "gaps.txt") + "\n")
    with pytest.raises(AudioError) as info:
        find_inputs(["@" + str(tmp_path / "outer.txt")])
    assert str(info.value) == (
        f"{tmp_path / 'outer.txt'}, line 1: {tmp_path / 'gaps.txt'}, line 3: no such file or "
        "folder: missing.wav"
    )
    (tmp_path / "bom.txt").write_text(str(tmp_path / "c" / "a.wav") + "\r\n", encoding="utf-8-sig")
    assert find_inputs(["@" + str(tmp_path / "bom.txt")]) == [(str(tmp_path / "c/a.wav"), "a.wav")]
    # comment lines and blank ones name nothing (a "#" line was a missing file, the job refused)
    commented = f"# the corpus\n\n  # indented too\n{tmp_path / 'c' / 'a.wav'}\n"
    (tmp_path / "commented.txt").write_text(commented)
    assert find_inputs(["@" + str(tmp_path / "commented.txt")]) == [
        (str(tmp_path / "c/a.wav"), "a.wav")
    ]
    c = str(tmp_path / "c")
    assert [name for _, name in find_inputs([c, c + "/sub"])] == ["a.wav", "sub/b.wav"]
    # named as in the outermost folder, whatever the order
    assert [name for _, name in find_inputs([c + "/sub", c])] == ["sub/b.wav", "a.wav"]


def test_an_unreadable_folder_is_one_line(tmp_path):
    """A subfolder the user cannot read (as 'nobody'): an error naming it, not its files left out
    of the job without a word."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to read as 'nobody'")
    corpus = Path(tempfile.mkdtemp(prefix="whisperms-bulk-"))
    try:
        corpus.chmod(0o755)
        (corpus / "a.wav").write_bytes(b"")
        (corpus / "locked").mkdir(mode=0o700)
        (corpus / "locked" / "b.wav").write_bytes(b"")
        (corpus / "locked").chmod(0)
        code = (
            "import sys; from whisperms.bulk_inputs import find_inputs; find_inputs([sys.argv[1]])"
        )
        nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        run = subprocess.run(
            [*nobody, sys.executable, "-c", code, str(corpus)],
            capture_output=True,
            text=True,
            timeout=120,
            env=user_env(),
        )
        assert run.returncode != 0
        assert f"cannot read the folder {corpus / 'locked'}: Permission denied" in run.stderr
    finally:
        (corpus / "locked").chmod(0o755)
        shutil.rmtree(corpus)


def test_symlinked_folders_are_followed(tmp_path):
    """A folder's walk follows symlinked folders (rglob skipped them silently) and walks each real
    folder once: a link to an ancestor does not loop, a link to a folder already in the corpus
    adds nothing, whatever its name sorts as."""
    corpus, elsewhere = tmp_path / "corpus", tmp_path / "elsewhere"
    for name in ("corpus/real/x.wav", "elsewhere/y.wav", "elsewhere/sub/z.flac"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (corpus / "link").symlink_to(elsewhere)
    (corpus / "loop").symlink_to(corpus)  # an ancestor
    (corpus / "again").symlink_to(corpus / "real")  # sorts before "real"
    found = find_inputs([str(corpus)])
    assert [name for _, name in found] == ["link/sub/z.flac", "link/y.wav", "real/x.wav"]
    assert found[0][0] == str(corpus / "link/sub/z.flac")
    # audio names that are no file (a link to nothing, a FIFO) are kept, to fail in a line each as
    # when given by name (they were left out without a word); other names are not audio
    (corpus / "broken.wav").symlink_to(tmp_path / "nowhere.wav")
    os.mkfifo(corpus / "fifo.wav")
    os.mkfifo(corpus / "fifo.txt")
    found = find_inputs([str(corpus)])
    assert [name for _, name in found] == [
        "broken.wav",
        "fifo.wav",
        "link/sub/z.flac",
        "link/y.wav",
        "real/x.wav",
    ]


def test_loops_of_links_and_a_bare_at_sign(tmp_path):
    """A loop of symbolic links in a folder is no folder (its walk stopped with an OSError
    traceback, the other files untranscribed): kept if named as audio, to fail in a line as a link
    to nothing does; given by name it is said to be one, not "no such file"; a bare @ names no
    list (it was "cannot read the list : Is a directory")."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "ok.wav").write_bytes(b"")
    (corpus / "notes").symlink_to("notes")
    (corpus / "loop.wav").symlink_to("loop.wav")
    assert [name for _, name in find_inputs([str(corpus)])] == ["loop.wav", "ok.wav"]
    with pytest.raises(AudioError) as info:
        find_inputs([str(corpus / "notes")])
    assert str(info.value) == (
        f"{corpus / 'notes'} is a symbolic link to nothing (or to a loop of links)"
    )
    with pytest.raises(AudioError) as info:
        find_inputs(["@"])
    assert str(info.value) == "@ without a list's path (@list.txt: a path per line)"


def test_outputs_that_cannot_be_written_fail_before_decoding(tmp_path, tiny_en_ct2_dir):
    """A folder where a transcript should be (the file counted as done, never transcribed), a
    file where a transcript's folder should be (os.makedirs' bare "[Errno 17] File exists"), and a
    name longer than the file system takes with -f all (decoded, four formats written and json
    not, on every run): each file one error line, found before any decoding (no Ray cluster
    started, nothing written), exit 1; an empty -o is refused (it wrote into the working folder)."""
    longest = os.pathconf(tmp_path, "PC_NAME_MAX")
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    (corpus / "sub").mkdir(parents=True)
    long_name = "x" * (longest - len(".json") + 1) + ".wav"  # its .json is one byte too long
    for name in ("a.wav", "sub/b.wav", long_name):
        shutil.copy(DATA / CORPUS["top.wav"], corpus / name)
    for name in ("a.txt", "a.vtt", "a.srt", "a.tsv", "a.json"):
        (out / name).mkdir(parents=True)
    (out / "sub").write_text("")
    run = _bulk(corpus, "-o", out, "--model", tiny_en_ct2_dir, "-f", "all", timeout=300)
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert lines[:3] == [
        f"whisperms-bulk: error: {corpus / 'a.wav'}: cannot write {out / 'a.txt'}: it is a folder",
        f"whisperms-bulk: error: {corpus / 'sub' / 'b.wav'}: cannot write its transcripts in "
        f"{out / 'sub'}: {out / 'sub'} is not a folder",
        f"whisperms-bulk: error: {corpus / long_name}: cannot write "
        f"{out / long_name[:-4]}.json: its name is longer than the {longest} bytes the file "
        "system takes",
    ]
    assert lines[3].startswith("whisperms-bulk: 0 transcribed") and lines[3].endswith(
        "0 done before, 3 failed"
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "a.json",
        "a.srt",
        "a.tsv",
        "a.txt",
        "a.vtt",
        "sub",
    ]
    line = _one_error(_bulk(corpus, "-o", "", "--model", tiny_en_ct2_dir, cwd=tmp_path))
    assert line == "whisperms-bulk: error: the output folder's name is empty"


def test_a_file_reached_twice_and_names_linked_to_one_file(tmp_path):
    """A file reached through a folder and through its subfolder is one file, named as in the
    outermost folder whatever the inputs' order (the order decided: corpus/a before corpus wrote
    a's outputs flat, and a later run over corpus did them again); two names linked to one file are
    two inputs, each with its output (the second was dropped without a word)."""
    corpus = tmp_path / "corpus"
    (corpus / "a").mkdir(parents=True)
    (corpus / "a" / "x.wav").write_bytes(b"")
    (corpus / "spk1.wav").symlink_to(corpus / "a" / "x.wav")
    (corpus / "spk2.wav").symlink_to(corpus / "a" / "x.wav")
    for inputs in ([corpus / "a", corpus], [corpus, corpus / "a"]):
        names = sorted(name for _, name in find_inputs([str(p) for p in inputs]))
        assert names == ["a/x.wav", "spk1.wav", "spk2.wav"], inputs


def test_a_folder_without_audio_is_a_warning(tmp_path, tiny_en_ct2_dir):
    """No audio found (a mistyped folder, files of a kind not looked for): one warning line, and
    no Ray cluster started for nothing (it said only "0 transcribed")."""
    (tmp_path / "notes.txt").write_text("not audio")
    run = _bulk(tmp_path, "-o", tmp_path / "out", "--model", tiny_en_ct2_dir)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 0 and len(lines) == 2, run.stderr
    assert lines[0].startswith("whisperms-bulk: warning: no audio files in the inputs (files ")
    assert lines[1].startswith("whisperms-bulk: 0 transcribed")


def test_output_folder_and_cluster_errors_are_one_line(tmp_path, tiny_en_ct2_dir):
    """An --output_dir that is a file or below one, and --address auto with no cluster running,
    are one error line and exit 1, not a traceback; the output folder is not made for nothing."""
    (tmp_path / "afile").write_text("")
    clip, model = DATA / CORPUS["top.wav"], ("--model", tiny_en_ct2_dir)
    line = _one_error(_bulk(clip, "-o", tmp_path / "afile", *model))
    assert line.endswith(f"output folder {tmp_path / 'afile'} exists and is not a folder")
    line = _one_error(_bulk(clip, "-o", tmp_path / "afile" / "sub", *model))
    assert line.endswith(
        f"cannot create output folder {tmp_path / 'afile' / 'sub'}: {tmp_path / 'afile'} is not "
        "a folder"
    )
    # no running cluster to find: Ray looks for one under RAY_TMPDIR, here an empty folder
    env = {k: v for k, v in user_env({"RAY_TMPDIR": str(tmp_path)}).items() if k != "RAY_ADDRESS"}
    run = _bulk(clip, "-o", tmp_path / "out", *model, "--address", "auto", env=env, timeout=120)
    assert "cannot start or reach the Ray cluster at auto" in _one_error(run)
    assert not (tmp_path / "out").exists()  # a job that wrote nothing leaves no folder


class _Silent:
    """A port that takes connections (the kernel's backlog) and never answers."""

    def __enter__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        return self.socket.getsockname()[1]

    def __exit__(self, *exc):
        self.socket.close()


class _Web:
    """A web server on a port, not a Ray cluster."""

    def __enter__(self):
        handler = http.server.SimpleHTTPRequestHandler
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.server.server_address[1]

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _closed_port():
    with socket.create_server(("127.0.0.1", 0)) as unused:
        return unused.getsockname()[1]


def test_an_address_where_no_ray_cluster_answers_is_one_line(tmp_path, tiny_en_ct2_dir):
    """--address at a closed port, at a port that never answers, at a web server, on a host that
    does not exist, or RAY_ADDRESS at a closed port: one error line saying why, within the answer
    timeout. Ray itself retried the closed and silent ports and the web server for minutes or for
    ever, logging on stderr."""
    clip, model = DATA / CORPUS["top.wav"], ("--model", tiny_en_ct2_dir)
    with _Silent() as silent, _Web() as web:
        cases = {
            f"127.0.0.1:{_closed_port()}": "connection refused",
            f"ray://127.0.0.1:{silent}": "no answer in 10 s",
            f"localhost:{web}": "what answers there is not a Ray cluster",
            "no-such-host.invalid:6379": "",
        }
        # RAY_ADDRESS stands for --address auto, as in Ray
        closed = f"127.0.0.1:{_closed_port()}"
        env = user_env({"RAY_ADDRESS": closed})
        # the runs at once (each waits on the network, the silent port 10 s)
        with ThreadPoolExecutor(len(cases) + 1) as pool:
            args = (clip, "-o", tmp_path / "out", *model, "--address")
            runs = {address: pool.submit(_bulk, *args, address, timeout=60) for address in cases}
            auto = pool.submit(_bulk, *args, "auto", env=env, timeout=60)
        for address, reason in cases.items():
            line = _one_error(runs[address].result())
            assert f"cannot reach the Ray cluster at {address}: {reason}" in line
        line = _one_error(auto.result())
        assert f"cannot reach the Ray cluster at {closed}: connection refused" in line
    assert not (tmp_path / "out").exists()  # no folder made for a job that did not start


def test_a_cluster_recorded_by_ray_start_that_has_gone(tmp_path, tiny_en_ct2_dir):
    """A `ray start` on this machine left its head's address in ray_current_cluster and the head
    is gone: with no --address the job runs on a new local cluster, as the README says (Ray's own
    default tried that head for ever); with --address auto it is one error line."""
    # a short private folder: Ray's socket paths must fit 107 characters
    ray_dir = tempfile.mkdtemp(prefix="wr", dir="/tmp")
    try:
        (Path(ray_dir) / "ray").mkdir()
        gone = f"127.0.0.1:{_closed_port()}"
        (Path(ray_dir) / "ray" / "ray_current_cluster").write_text(gone + "\n")
        env = user_env({"RAY_TMPDIR": ray_dir})
        env.pop("RAY_ADDRESS", None)
        clip, out = DATA / CORPUS["top.wav"], tmp_path / "out"
        run = _bulk(clip, "-o", out, "--model", tiny_en_ct2_dir, env=env, timeout=300)
        assert run.returncode == 0, run.stderr
        assert not [line for line in run.stderr.splitlines() if "warning" in line], run.stderr
        assert (out / clip.name).with_suffix(".txt").read_text().strip()
        run = _bulk(clip, "-o", tmp_path / "o2", "--model", tiny_en_ct2_dir, "--address", "auto",
                    env=env, timeout=60)  # fmt: skip
        assert f"cannot reach the Ray cluster at {gone}: connection refused" in _one_error(run)
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)


def test_a_cluster_started_elsewhere_at_its_address(tmp_path, tiny_en_ct2_dir, tiny_en_model):
    """A head started with `ray start` on one CPU, with Ray's token authentication (a token in
    ~/.ray), reached by --address HOST:PORT. Without RAY_AUTH_MODE=token (Ray only sends the
    token to an address it finds itself): one line that says so, not twenty seconds of Ray's
    retries on stderr. With it: the default worker size fits the one CPU (it was 2: refused),
    and the file is transcribed as alone."""
    ray_cli = Path(sys.executable).parent / "ray"
    # a short private folder: Ray's socket paths must fit 107 characters
    ray_dir, home = tempfile.mkdtemp(prefix="wr", dir="/tmp"), tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    env = user_env({"RAY_TMPDIR": ray_dir, "HOME": str(home)})
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_MODE", None)
    port = _closed_port()
    head = [str(ray_cli), "start", "--head", "--port", str(port), "--num-cpus", "1"]
    head += ["--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", ray_dir]
    started = subprocess.run(head, capture_output=True, text=True, timeout=180, env=env)
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        clip, out = DATA / CORPUS["top.wav"], tmp_path / "out"
        command = (clip, "-o", out, "--model", tiny_en_ct2_dir, "--address", f"127.0.0.1:{port}")
        line = _one_error(_bulk(*command, env=env, timeout=180))
        assert line.endswith("the cluster asks for its authentication token (Ray's token "
                             "authentication: set RAY_AUTH_MODE=token, and RAY_AUTH_TOKEN or "
                             "~/.ray/auth_token)")  # fmt: skip
        run = _bulk(*command, env={**env, "RAY_AUTH_MODE": "token"})
        assert run.returncode == 0, run.stderr
        assert "1 file on 1 worker of 1 CPU" in run.stderr
        result = BatchedTranscriber(tiny_en_model, **CLI_DEFAULTS).run(str(clip))
        expected = "".join(s.text.strip() + "\n" for s in result.segments)
        assert (out / clip.name).with_suffix(".txt").read_text() == expected
    finally:
        subprocess.run([str(ray_cli), "stop", "--force"], capture_output=True, timeout=120, env=env)
        shutil.rmtree(ray_dir, ignore_errors=True)


def test_the_default_worker_fits_a_one_cpu_machine(tmp_path, tiny_en_ct2_dir):
    """A local cluster on a machine of one CPU (Ray told so by RAY_OVERRIDE_RESOURCES, as it
    reads a container's limit): one worker of one CPU, not a refusal of the default two."""
    env = user_env({"RAY_OVERRIDE_RESOURCES": json.dumps({"CPU": 1})})
    env.pop("RAY_ADDRESS", None)
    run = _bulk(DATA / CORPUS["top.wav"], "-o", tmp_path, "--model", tiny_en_ct2_dir, env=env)
    assert run.returncode == 0, run.stderr
    assert "1 file on 1 worker of 1 CPU" in run.stderr
    assert (tmp_path / CORPUS["top.wav"]).with_suffix(".txt").read_text().strip()


def test_workers_that_do_not_fit_the_cluster(tmp_path, tiny_en_ct2_dir):
    """On a local cluster: a worker needing more CPUs than a machine has is refused in one line
    (Ray would wait for them forever); more workers than the CPUs allow are capped, said in a
    line, and every task is done (the workers that could not start held theirs forever). The
    workers' warnings are the job's lines, each once."""
    model = ("--model", tiny_en_ct2_dir)
    broken = []
    for index in range(4):  # unreadable files: every task is done quickly, and fails
        broken.append(tmp_path / f"broken{index}.wav")
        broken[-1].write_text("not audio")
    run = _bulk(broken[0], "-o", tmp_path / "out", *model, "--cpus_per_worker", 4096, timeout=300)
    line = _one_error(run, status=2)
    assert "--cpus_per_worker 4096 is more than any machine of the Ray cluster" in line
    assert not (tmp_path / "out").exists()  # it was made, and left empty
    # and a file a recorder never closed (its header's sizes 0): transcribed, with a warning
    unclosed = bytearray((DATA / CORPUS["top.wav"]).read_bytes())
    data = unclosed.index(b"data")
    unclosed[4:8] = unclosed[data + 4 : data + 8] = bytes(4)
    (tmp_path / "unclosed.wav").write_bytes(unclosed)
    options = ("--workers", 4096, "--cpus_per_worker", 1, "--files_per_task", 1)
    # an English-only model given another language: every worker warns, the job once
    options += ("--language", "Spanish")
    run = _bulk(
        *broken, tmp_path / "unclosed.wav", "-o", tmp_path / "out", *model, *options, timeout=600
    )
    assert run.returncode == 1, run.stderr
    assert "whisperms-bulk: --workers 4096 capped to " in run.stderr
    assert len(_errors(run)) == 4 and "4 failed" in run.stderr and "1 transcribed" in run.stderr
    # the workers' warnings reach the job's output (they stayed in the workers' logs), each once
    warned = [line for line in run.stderr.splitlines() if " warning: " in line]
    assert sorted(warned) == [
        f"whisperms-bulk: warning: {tmp_path / 'unclosed.wav'}: its header declares no audio, but "
        "3.6 s follow it (a recording that was not closed?); transcribing them",
        "whisperms-bulk: warning: this model is English-only; language 'Spanish' is ignored and "
        "the audio is transcribed as English",
    ], run.stderr
    assert (tmp_path / "out" / "unclosed.txt").read_text().strip()


@pytest.mark.parametrize(
    "sent, status, line",
    [
        (signal.SIGINT, 130, "whisperms-bulk: interrupted (the files written so far are kept)"),
        # a scheduler's or `docker stop`'s: it was Ray's crash dump, exit 1 or 15
        (signal.SIGTERM, 143, "whisperms-bulk: terminated (the files written so far are kept)"),
    ],
)
def test_ctrl_c_and_sigterm_are_one_line(tmp_path, tiny_en_ct2_dir, sent, status, line):
    """Ctrl-C or SIGTERM during a run: one line and exit 128 + the signal, not a traceback."""
    clip = DATA / CORPUS["top.wav"]
    inputs = []
    for index in range(8):
        inputs.append(tmp_path / f"clip{index}.wav")
        shutil.copy(clip, inputs[-1])
    command = [sys.executable, "-m", "whisperms.bulk", *map(str, inputs), "-o", str(tmp_path)]
    command += ["--model", str(tiny_en_ct2_dir), "--workers", "1", "--cpus_per_worker", "1"]
    # SIGINT as the default handler in the child, as a shell gives it (not ignored)
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env=user_env(), preexec_fn=default_sigint
    )
    try:
        started = process.stderr.readline()  # the workers are started
        assert "8 files on 1 worker" in started, started
        process.send_signal(sent)
        rest = process.stderr.read()
        assert (process.wait(timeout=120), rest.splitlines()) == (status, [line])
        # at once, not when the worker's task of all 8 files is done (SIGTERM waited for it)
        assert len(list(tmp_path.glob("*.txt"))) < len(inputs)
    finally:
        process.kill()


def _ray_processes(ray_dir, name=b""):
    """Process ids of the Ray processes (command lines holding `name`) of the cluster running
    under RAY_TMPDIR `ray_dir`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes()
            environment = (entry / "environ").read_bytes()
        except OSError:
            continue
        if name in title and f"RAY_TMPDIR={ray_dir}".encode() in environment:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize(
    "sent, status, line",
    [
        (signal.SIGINT, 130, "whisperms-bulk: interrupted (the files written so far are kept)"),
        (signal.SIGTERM, 143, "whisperms-bulk: terminated (the files written so far are kept)"),
    ],
)
def test_ctrl_c_and_sigterm_while_ray_starts(tmp_path, tiny_en_ct2_dir, sent, status, line):
    """Ctrl-C or SIGTERM while ray.init runs (sent once its raylet is up): one line and exit 128 +
    the signal, once Ray has started, and no Ray process left behind. SIGTERM there ended the job
    with status 15 and no word (the handler ray.init sets), and either signal left Ray's agents
    running on without the job (or crashed ray.shutdown)."""
    ray_dir = tempfile.mkdtemp(prefix="ws", dir="/tmp")  # Ray's socket paths fit 107 characters
    command = [sys.executable, "-m", "whisperms.bulk", str(DATA / CORPUS["top.wav"])]
    command += ["-o", str(tmp_path / "out"), "--model", str(tiny_en_ct2_dir), "--workers", "1"]
    env = {k: v for k, v in user_env({"RAY_TMPDIR": ray_dir}).items() if k != "RAY_ADDRESS"}
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint
    )
    try:
        deadline = time.monotonic() + 120
        while not _ray_processes(ray_dir, b"raylet") and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.02)
        process.send_signal(sent)
        rest = process.stderr.read()
        assert (process.wait(timeout=120), rest.splitlines()) == (status, [line])
        deadline = time.monotonic() + 10  # the last ones may take a moment to go
        while _ray_processes(ray_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _ray_processes(ray_dir) == []
        assert not (tmp_path / "out").exists()
    finally:
        process.kill()
        for pid in _ray_processes(ray_dir):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_dir, ignore_errors=True)


def test_sigterm_before_ray_starts_is_one_line(tmp_path, tiny_en_ct2_dir):
    """SIGTERM while the inputs are read (here a list from a pipe no one writes yet, as
    `@<(find ...)` gives one; a large corpus's scan takes seconds) ended the job without a word,
    status -15: one line and 143, as later."""
    fifo = tmp_path / "list"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "whisperms.bulk", f"@{fifo}", "-o", str(tmp_path / "out")]
    command += ["--model", str(tiny_en_ct2_dir)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=user_env())
    try:
        time.sleep(3)  # Python, Ray's import, the model's lookup; then the list's open waits
        assert process.poll() is None, process.stderr.read()
        process.send_signal(signal.SIGTERM)
        rest = process.stderr.read()
        assert (process.wait(timeout=60), rest.splitlines()) == (
            143,
            ["whisperms-bulk: terminated (the files written so far are kept)"],
        )
    finally:
        process.kill()


def test_ctrl_c_pressed_again_while_ray_stops(tmp_path, tiny_en_ct2_dir):
    """Ctrl-C, then Ctrl-C again and again while the job stops (Ray's shutdown takes a second or
    two, and users press again): it broke off the shutdown, the job ended with status 1 and Ray's
    agents ran on for a minute. Now the stop under way is the answer: 130, one line, nothing
    left."""
    ray_dir = tempfile.mkdtemp(prefix="wa", dir="/tmp")  # Ray's socket paths fit 107 characters
    inputs = []
    for index in range(4):
        inputs.append(tmp_path / f"clip{index}.wav")
        shutil.copy(DATA / CORPUS["top.wav"], inputs[-1])
    command = [sys.executable, "-m", "whisperms.bulk", *map(str, inputs), "-o", str(tmp_path)]
    command += ["--model", str(tiny_en_ct2_dir), "--workers", "1", "--cpus_per_worker", "1"]
    env = {k: v for k, v in user_env({"RAY_TMPDIR": ray_dir}).items() if k != "RAY_ADDRESS"}
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint
    )
    try:
        started = process.stderr.readline()
        assert "4 files on 1 worker" in started, started
        while process.poll() is None:
            process.send_signal(signal.SIGINT)
            time.sleep(0.05)
        rest = process.stderr.read()
        assert (process.wait(), rest.splitlines()) == (
            130,
            ["whisperms-bulk: interrupted (the files written so far are kept)"],
        )
        deadline = time.monotonic() + 10  # the last ones may take a moment to go
        while _ray_processes(ray_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _ray_processes(ray_dir) == []
    finally:
        process.kill()
        for pid in _ray_processes(ray_dir):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_dir, ignore_errors=True)


def _ray_workers(ray_dir):
    """Process ids of the bulk job's Ray workers whose cluster runs under RAY_TMPDIR `ray_dir`."""
    return _ray_processes(ray_dir, b"ray::_Worker")


def test_a_worker_that_dies_is_replaced(tmp_path, tiny_en_ct2_dir, tiny_en_model):
    """A worker killed in the middle of its task (as the kernel's OOM killer does): a new worker
    takes over, the task's files not yet written are done one by one, and every output is what the
    file gives alone. It ended the whole job, naming no file."""
    ray_dir = tempfile.mkdtemp(prefix="wr", dir="/tmp")  # Ray's socket paths fit 107 characters
    env = user_env({"RAY_TMPDIR": ray_dir})
    env.pop("RAY_ADDRESS", None)
    clips = [c for c in sorted(CORPUS.values()) if not c.startswith("ljspeech")][:4]
    inputs = []
    for index, clip in enumerate(clips + clips):
        inputs.append(tmp_path / f"in{index}.wav")
        shutil.copy(DATA / clip, inputs[-1])
    out = tmp_path / "out"
    command = [sys.executable, "-m", "whisperms.bulk", *map(str, inputs), "-o", str(out)]
    command += ["--model", str(tiny_en_ct2_dir), "--workers", "1", "--cpus_per_worker", "1"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("*.txt")) and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = _ray_workers(ray_dir)
        # what the job had done when no single worker was found (seen once on a loaded machine)
        seen = (workers, process.poll(), sorted(p.name for p in out.glob("*")))
        assert len(workers) == 1, seen
        (worker,) = workers
        os.kill(worker, signal.SIGKILL)
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
        assert f"{len(inputs)} transcribed" in stderr and "0 failed" in stderr, stderr
    finally:
        process.kill()
        shutil.rmtree(ray_dir, ignore_errors=True)
    alone = BatchedTranscriber(tiny_en_model, **CLI_DEFAULTS)
    for path, clip in zip(inputs, clips + clips):
        expected = "".join(s.text.strip() + "\n" for s in alone.run(str(DATA / clip)).segments)
        assert (out / path.name).with_suffix(".txt").read_text() == expected, path.name
