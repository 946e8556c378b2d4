"""bulk_records: which outputs a later bulk run takes as done (no Ray: the records alone)."""

import json
import os

from whisperms.bulk_records import RECORDS_FILE, Records, setup_key

TXT = ["txt"]


def test_an_output_is_done_only_for_what_made_it(tmp_path):
    source = tmp_path / "one.wav"
    source.write_bytes(b"0" * 100)
    setup = setup_key("tiny.en", {"beam_size": 5, "batch_size": 8})
    records = Records(str(tmp_path), setup)
    assert not records.stale("one", str(source), TXT)  # no record: an output found counts as done
    records.add("one", str(source), TXT)
    again = Records(str(tmp_path), setup)
    assert not again.stale("one", str(source), TXT)
    other = tmp_path / "b" / "one.wav"  # another folder's file under the same output name
    other.parent.mkdir()
    other.write_bytes(b"1" * 120)
    assert again.stale("one", str(other), TXT)
    for model, beam_size in (("base", 5), ("tiny.en", 1)):
        setup_then = setup_key(model, {"beam_size": beam_size})
        assert Records(str(tmp_path), setup_then).stale("one", str(source), TXT)
    # the batch size changes no output
    assert not Records(str(tmp_path), setup_key("tiny.en", {"beam_size": 5})).stale(
        "one", str(source), TXT
    )
    stat = source.stat()  # the same file rewritten: a new modification time
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert again.stale("one", str(source), TXT)
    moved = tmp_path / "moved.wav"  # a corpus moved keeps its files' size and time
    os.rename(other, moved)
    Records(str(tmp_path), setup).add("two", str(moved), TXT)
    assert not Records(str(tmp_path), setup).stale("two", str(moved), TXT)


def test_a_record_cut_short_is_ignored(tmp_path):
    source = tmp_path / "x.wav"
    source.write_bytes(b"0")
    records = Records(str(tmp_path), "s")
    records.add("x", str(source), TXT)
    with open(tmp_path / RECORDS_FILE, "a") as f:
        f.write('{"name": "y", "sour')  # a crash mid-line
    assert set(Records(str(tmp_path), "s").by_name) == {"x"}
    Records(str(tmp_path), "s").add(os.fsdecode(b"caf\xe9"), str(source), TXT)  # not UTF-8
    assert os.fsdecode(b"caf\xe9") in Records(str(tmp_path), "s").by_name


def test_another_input_under_the_output_name_is_stale(tmp_path):
    """Outputs are named by the input's name without its extension: talk.mp3 writes the talk.txt
    that talk.wav wrote. The records were looked up by the whole name, so talk.mp3 found none and
    the other recording's transcript counted as its own; likewise One.wav after one.wav where the
    output folder's file system ignores case."""
    wav, mp3 = tmp_path / "talk.wav", tmp_path / "talk.mp3"
    wav.write_bytes(b"0" * 100)
    mp3.write_bytes(b"1" * 100)
    setup = setup_key("tiny.en", {})
    Records(str(tmp_path), setup).add("x/talk.wav", str(wav), TXT)
    again = Records(str(tmp_path), setup)
    assert not again.stale("x/talk.wav", str(wav), TXT)
    assert again.stale("x/talk.mp3", str(mp3), TXT)
    assert not again.stale("x/other.mp3", str(mp3), TXT)  # no record: counts as done
    Records(str(tmp_path), setup, fold_case=True).add("One.wav", str(wav), TXT)
    assert Records(str(tmp_path), setup, fold_case=True).stale("one.wav", str(wav), TXT)
    assert not Records(str(tmp_path), setup, fold_case=True).stale("One.wav", str(wav), TXT)
    assert not Records(str(tmp_path), setup).stale("one.wav", str(wav), TXT)  # another output


def test_a_record_covers_the_formats_written_with_it(tmp_path):
    """-f txt with tiny.en, then -f srt with base, then -f txt with base: the second run's record
    vouched for every format, so base's third run kept tiny.en's txt as done. A record covers the
    formats written from the same input and setup; a record from before formats were recorded
    covers all of them."""
    source = tmp_path / "a.wav"
    source.write_bytes(b"0" * 100)
    tiny, base = setup_key("tiny.en", {}), setup_key("base", {})
    Records(str(tmp_path), tiny).add("a.wav", str(source), TXT)
    assert Records(str(tmp_path), base).stale("a.wav", str(source), ["srt"])
    Records(str(tmp_path), base).add("a.wav", str(source), ["srt"])
    assert Records(str(tmp_path), base).stale("a.wav", str(source), TXT)  # tiny.en's txt
    assert not Records(str(tmp_path), base).stale("a.wav", str(source), ["srt"])
    Records(str(tmp_path), base).add("a.wav", str(source), TXT)
    assert not Records(str(tmp_path), base).stale("a.wav", str(source), ["srt", "txt"])
    assert Records(str(tmp_path), base).stale("a.wav", str(source), ["srt", "txt", "json"])
    old = {"name": "b.wav", "source": [100, source.stat().st_mtime_ns], "setup": base}
    with open(tmp_path / RECORDS_FILE, "a") as f:
        f.write(json.dumps(old) + "\n")
    renamed = tmp_path / "b.wav"
    source.rename(renamed)
    assert not Records(str(tmp_path), base).stale("b.wav", str(renamed), ["json", "tsv"])
    Records(str(tmp_path), base).add("b.wav", str(renamed), TXT)  # the same input and setup
    assert not Records(str(tmp_path), base).stale("b.wav", str(renamed), ["json", "tsv"])
