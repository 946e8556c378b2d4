"""What the bulk job's outputs were made from: a record per output name (the input's name without
its extension: `talk.wav` and `talk.mp3` write the same `talk.txt`), kept in the output folder, so
that a later run skips only the files it would write the same way.

An output found with a record of another input (another recording under the name: a folder's
`one.wav` after another's, `talk.mp3` after `talk.wav`, or the file changed since), of another model
or other options, or of a format the record does not cover (written before another run's record took
its place) is done again; one found without a record (written otherwise, or by a version before the
records) counts as done, as before. An input is known by its size and modification time: a corpus
moved or renamed keeps them, so a run that stopped resumes where it was.
"""

import hashlib
import json
import os
from typing import Dict, Iterable, Optional

# in the output folder, beside the transcripts; one JSON object per line, appended as files finish
RECORDS_FILE = ".whisperms-bulk-records.jsonl"


def setup_key(model: str, options: dict) -> str:
    """A short fingerprint of what makes the outputs' text: the model and the decoding options
    (not the batch size: each file's output is what it gives alone, in any batch)."""
    decoding = {name: value for name, value in options.items() if name != "batch_size"}
    text = json.dumps([model, decoding], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def source_stamp(path: str) -> Optional[list]:
    """[size, modification time in ns] of an input, or None when it cannot be read."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def output_name(name: str, fold_case: bool = False) -> str:
    """The name an input's outputs go by: its name below the input folder without the extension,
    normalised, and case-folded for an output folder whose file system ignores case."""
    stem = os.path.normpath(os.path.splitext(name)[0])
    return stem.casefold() if fold_case else stem


class Records:
    """The records of `output_dir` for outputs made with `setup` (setup_key); `fold_case`: the
    folder's file system ignores case (bulk_inputs.ignores_case)."""

    def __init__(self, output_dir: str, setup: str, fold_case: bool = False):
        self.path = os.path.join(output_dir, RECORDS_FILE)
        self.setup, self.fold_case = setup, fold_case
        self.by_name: Dict[str, dict] = {}
        try:
            with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError:  # none yet
            text = ""
        # a last line cut short by a crash: the next record starts a line of its own
        self.open_line = bool(text) and not text.endswith("\n")
        for line in text.splitlines():
            try:
                record = json.loads(line)
                self.by_name[output_name(record["name"], fold_case)] = record
            except (ValueError, KeyError, TypeError, AttributeError):  # a line cut short
                continue

    def stale(self, name: str, path: str, formats: Iterable[str]) -> bool:
        """Whether outputs of `formats` under `name`'s output name were recorded as made from
        something else: another input, a changed one, another model or options, or a record that
        does not cover one of these formats (a record before formats were recorded covers all)."""
        record = self.by_name.get(output_name(name, self.fold_case))
        if record is None:
            return False
        covered = record.get("formats")
        if covered is not None and not set(formats) <= set(covered):
            return True
        if record.get("name") != name:  # another input under the output name
            return True
        return record.get("source") != source_stamp(path) or record.get("setup") != self.setup

    def add(self, name: str, path: str, formats: Iterable[str]):
        """Record that `name`'s outputs of `formats` were made from `path` now, with the formats
        recorded before from the same input and setup (OSError if it cannot)."""
        key, source = output_name(name, self.fold_case), source_stamp(path)
        formats, before = set(formats), self.by_name.get(key)
        record = {"name": name, "source": source, "setup": self.setup}
        if before is not None and all(before.get(k) == v for k, v in record.items()):
            if before.get("formats") is None:  # an earlier version's: it covers every format
                formats = None
            else:
                formats |= set(before["formats"])
        if formats is not None:
            record["formats"] = sorted(formats)
        self.by_name[key] = record
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8", errors="surrogateescape") as f:
            f.write("\n" + line if self.open_line else line)
        self.open_line = False
