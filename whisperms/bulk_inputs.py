"""The files a `whisperms-bulk` job transcribes: its inputs (files, folders walked, @lists) found,
the inputs refused before anything runs because their outputs would be one file, and each file's
transcripts: where they go, whether they are all there (is_done), and whether they can be
written (unwritable)."""

import os
import tempfile
from pathlib import Path
from typing import List, Sequence, Tuple

from .bulk_records import output_name
from .errors import AudioError, OptionsError, OutputError
from .output_files import check_targets, output_paths

AUDIO_EXTENSIONS = (
    ".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".mp4", ".aac", ".webm", ".wma", ".mkv",
)  # fmt: skip


def find_inputs(inputs: Sequence[str]) -> List[Tuple[str, str]]:
    """(absolute path, output name) of every file the inputs name: a file's output name is its own
    name, a folder's files keep their path below it, a list's lines are inputs of their own. An
    input that does not exist, a list that cannot be read as text or names itself (through other
    lists or not), and a folder that cannot be read are AudioErrors (inputs that cannot be read).
    A file reached twice (named twice, or in a folder and in a subfolder also given) is kept once,
    where first reached, under the name it has in the outermost folder given (whatever the order
    of the inputs); two names linked to one file are two files, each with its output."""
    kept, where = [], {}
    for path, name in _find(inputs, ()):
        # one entry of one real folder, however it was reached
        entry = (os.path.realpath(os.path.dirname(path)), os.path.basename(path))
        if entry not in where:
            where[entry] = len(kept)
            kept.append((path, name))
        elif len(Path(name).parts) > len(Path(kept[where[entry]][1]).parts):
            kept[where[entry]] = (path, name)
    return kept


def _find(inputs: Sequence[str], lists: Tuple[str, ...]) -> List[Tuple[str, str]]:
    """find_inputs' files in the order reached; `lists`: the lists being read (real paths)."""
    found: List[Tuple[str, str]] = []
    for item in inputs:
        if item.startswith("@"):
            if not item[1:]:
                raise AudioError("@ without a list's path (@list.txt: a path per line)")
            real = os.path.realpath(item[1:])
            if real in lists:
                raise AudioError(f"the list {item[1:]} names itself (through @lists it names)")
            try:
                # utf-8-sig: a byte-order mark (Windows Notepad's) is not part of the first path
                text = Path(item[1:]).read_text(encoding="utf-8-sig")
            except OSError as error:
                raise AudioError(f"cannot read the list {item[1:]}: {error.strerror}") from None
            except UnicodeDecodeError:
                raise AudioError(
                    f"cannot read the list {item[1:]}: not UTF-8 text (a list has a path per line)"
                ) from None
            # a path per "\n" line, as tar -T reads them: splitlines() also broke a name at a form
            # feed or U+2028, and strip() took a leading space that was part of it
            for number, line in enumerate(text.split("\n"), 1):
                path = _listed_path(line.removesuffix("\r"))
                if not path.strip() or path.lstrip().startswith("#"):  # blank lines, comments
                    continue
                try:
                    found += _find([path], (*lists, real))
                except AudioError as error:  # where the list names it (nested lists: each)
                    raise AudioError(f"{item[1:]}, line {number}: {error}") from None
        elif os.path.isdir(item):
            found += [(os.path.abspath(path), name) for path, name in _walk(item)]
        elif os.path.exists(item):
            found.append((os.path.abspath(item), os.path.basename(item)))
        elif os.path.islink(item):
            raise AudioError(f"{item} is a symbolic link to nothing (or to a loop of links)")
        else:
            raise AudioError(f"no such file or folder: {item}")
    return found


def _listed_path(line: str) -> str:
    """A list's line as the path it names: as written, or without the spaces around it where only
    that names something (a list typed by hand)."""
    return line if os.path.lexists(line) else line.strip()


def _walk(root: str) -> List[Tuple[str, str]]:
    """(path, path below `root`) of the audio files under `root`, sorted by that name. Symlinked
    folders are followed (Path.rglob skips them, and a corpus assembled from links lost them
    silently), and each real folder is walked once, so a link to an ancestor cannot loop and a
    file is transcribed once: the folders reached without a link come first, so a link to one of
    them is the one skipped."""
    found: List[Tuple[str, str]] = []
    visited = set()
    plain, linked = [(root, "")], []
    while plain or linked:
        folder, below = plain.pop() if plain else linked.pop(0)
        real = os.path.realpath(folder)
        if real in visited:
            continue
        visited.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as error:  # its files would be missing from the job without a word
            reason = error.strerror or str(error)
            raise AudioError(f"cannot read the folder {folder}: {reason}") from None
        for entry in entries:
            name = os.path.join(below, entry.name)
            try:
                is_folder = entry.is_dir()  # follows symlinks
            except OSError:  # a loop of links: not a folder, kept below if named as audio
                is_folder = False
            if is_folder:
                (linked if entry.is_symlink() else plain).append((entry.path, name))
            elif os.path.splitext(entry.name)[1].lower() in AUDIO_EXTENSIONS:
                # a link to nothing, a FIFO: kept, to fail in one line each as the files given
                # (they were left out without a word)
                found.append((entry.path, name))
    return sorted(found, key=lambda item: item[1])


def refuse_collisions(files: Sequence[Tuple[str, str]], fold_case: bool = False) -> None:
    """An OptionsError naming a few of the inputs whose outputs would be the same file (one.wav
    and one.flac in a folder, B.wav and B.WAV, one.wav in two input folders or lists; with
    `fold_case`, for an output folder whose file system ignores case, also One.wav and one.wav):
    one would overwrite the other and a later run would count both as done. Found before any work
    starts."""
    by_stem: dict = {}
    for path, name in files:
        stem = output_name(name)
        by_stem.setdefault(output_name(name, fold_case), []).append((path, stem))
    clashes = [entries for entries in by_stem.values() if len(entries) > 1]
    if not clashes:
        return
    shown = "; ".join(
        f"{' and '.join(path for path, _ in entries)} (output {entries[0][1]}.*)"
        for entries in clashes[:3]
    )
    more = f"; and {len(clashes) - 3} more" if len(clashes) > 3 else ""
    raise OptionsError(
        "inputs that would write the same output (rename one, or give them to runs with "
        f"different --output_dir): {shown}{more}"
    )


def ignores_case(folder: str) -> bool:
    """Whether the file system of `folder` (or of its nearest existing parent) takes names that
    differ only in case for the same file (macOS and Windows by default, some network shares):
    a probe file is made there and looked for under another case. False where nothing can be
    written: the outputs could not be written either, and that is reported then."""
    folder = os.path.abspath(folder)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        handle, probe = tempfile.mkstemp(prefix=".whisperms-case-probe-", dir=folder)
    except OSError:
        return False
    try:
        os.close(handle)
        head, name = os.path.split(probe)
        return os.path.exists(os.path.join(head, name.upper()))
    finally:
        os.remove(probe)


def outputs(output_dir: str, name: str, output_format: str) -> List[str]:
    """The transcripts of the file found under `name`, at its path below `output_dir`."""
    return output_paths(output_format, os.path.dirname(os.path.join(output_dir, name)), name)


def is_done(output_dir: str, name: str, output_format: str) -> bool:
    """Whether every transcript of the file is there, each a file: a folder in a transcript's
    place is not one (the file was counted done, and never transcribed)."""
    return all(os.path.isfile(path) for path in outputs(output_dir, name, output_format))


def unwritable(
    files: Sequence[Tuple[str, str]], output_dir: str, output_format: str, inputs: frozenset
) -> List[Tuple[str, str]]:
    """(path, why, in one line) of the files whose transcripts could not be written, found before
    any decoding: a file where their folder below `output_dir` must be, and what the whisperms
    command refuses (output_files.check_targets: a folder in a transcript's place, a name longer
    than the file system takes, one of the `inputs`). Written after the decoding, some formats
    were there and others not."""
    refused = []
    for path, name in files:
        folder = os.path.dirname(os.path.join(os.path.abspath(output_dir), name))
        existing = folder
        while not os.path.lexists(existing):
            existing = os.path.dirname(existing)
        try:
            if not os.path.isdir(existing):
                raise OutputError(
                    f"cannot write its transcripts in {folder}: {existing} is not a folder"
                )
            check_targets(output_format, folder, path, inputs)
        except OutputError as error:
            refused.append((path, str(error)))
    return refused
