"""What the bulk job's outputs were made from: a record per output name, kept in the output folder,
so that a later run skips only the files it would write the same way.

An output found with a record of another input (another recording under the name: a folder's
`one.wav` after another's, or the file changed since), of another model or other options is done
again; one found without a record (written otherwise, or by a version before the records) counts
as done, as before. An input is known by its size and modification time: a corpus moved or renamed
keeps them, so a run that stopped resumes where it was.
"""

import hashlib
import json
import os
from typing import Dict, Optional

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


class Records:
    """The records of `output_dir` for outputs made with `setup` (setup_key)."""

    def __init__(self, output_dir: str, setup: str):
        self.path = os.path.join(output_dir, RECORDS_FILE)
        self.setup = setup
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
                self.by_name[record["name"]] = record
            except (ValueError, KeyError, TypeError):  # a line cut short by a crash
                continue

    def stale(self, name: str, path: str) -> bool:
        """Whether the outputs under `name` were recorded as made from something else: another
        input, a changed one, another model or options."""
        record = self.by_name.get(name)
        if record is None:
            return False
        return record.get("source") != source_stamp(path) or record.get("setup") != self.setup

    def add(self, name: str, path: str):
        """Record that `name`'s outputs were made from `path` now (OSError if it cannot)."""
        record = {"name": name, "source": source_stamp(path), "setup": self.setup}
        self.by_name[name] = record
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8", errors="surrogateescape") as f:
            f.write("\n" + line if self.open_line else line)
        self.open_line = False
