"""bulk_records: which outputs a later bulk run takes as done (no Ray: the records alone)."""

import os

from whisperms.bulk_records import RECORDS_FILE, Records, setup_key


def test_an_output_is_done_only_for_what_made_it(tmp_path):
    source = tmp_path / "one.wav"
    source.write_bytes(b"0" * 100)
    setup = setup_key("tiny.en", {"beam_size": 5, "batch_size": 8})
    records = Records(str(tmp_path), setup)
    assert not records.stale("one", str(source))  # no record: an output found counts as done
    records.add("one", str(source))
    again = Records(str(tmp_path), setup)
    assert not again.stale("one", str(source))
    other = tmp_path / "b" / "one.wav"  # another folder's file under the same output name
    other.parent.mkdir()
    other.write_bytes(b"1" * 120)
    assert again.stale("one", str(other))
    assert Records(str(tmp_path), setup_key("base", {"beam_size": 5})).stale("one", str(source))
    assert Records(str(tmp_path), setup_key("tiny.en", {"beam_size": 1})).stale("one", str(source))
    # the batch size changes no output
    assert not Records(str(tmp_path), setup_key("tiny.en", {"beam_size": 5})).stale(
        "one", str(source)
    )
    stat = source.stat()  # the same file rewritten: a new modification time
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert again.stale("one", str(source))
    moved = tmp_path / "moved.wav"  # a corpus moved keeps its files' size and time
    os.rename(other, moved)
    Records(str(tmp_path), setup).add("two", str(moved))
    assert not Records(str(tmp_path), setup).stale("two", str(moved))


def test_a_record_cut_short_is_ignored(tmp_path):
    source = tmp_path / "x.wav"
    source.write_bytes(b"0")
    records = Records(str(tmp_path), "s")
    records.add("x", str(source))
    with open(tmp_path / RECORDS_FILE, "a") as f:
        f.write('{"name": "y", "sour')  # a crash mid-line
    assert set(Records(str(tmp_path), "s").by_name) == {"x"}
    Records(str(tmp_path), "s").add(os.fsdecode(b"caf\xe9"), str(source))  # not UTF-8
    assert os.fsdecode(b"caf\xe9") in Records(str(tmp_path), "s").by_name
