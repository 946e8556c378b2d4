"""What the `whisperms` command checks of its output folder and file names before it decodes, so
a problem there costs no decoding."""

import os
import tempfile

from .errors import OutputError


def check_output_folder(folder):
    """An OutputError unless `folder` is a writable folder, or can be created as one (it is created
    on the first write, so a run that writes nothing leaves nothing behind)."""
    if not folder:
        raise OutputError("the output folder's name is empty")
    path = os.path.abspath(folder)
    existing = path
    while not os.path.exists(existing):
        if os.path.islink(existing):
            raise OutputError(
                f"cannot create output folder {folder}: {existing} is a broken symbolic link"
            )
        existing = os.path.dirname(existing)
    if existing == path and not os.path.isdir(path):
        raise OutputError(f"output folder {folder} exists and is not a folder")
    if not os.path.isdir(existing):
        raise OutputError(f"cannot create output folder {folder}: {existing} is not a folder")
    if _read_only(existing):
        if existing == path:
            raise OutputError(f"output folder {folder} is on a read-only file system")
        raise OutputError(
            f"cannot create output folder {folder}: {existing} is on a read-only file system"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == path:
            raise OutputError(f"output folder {folder} is not writable: permission denied")
        raise OutputError(f"cannot create output folder {folder}: permission denied in {existing}")
    try:  # what access() cannot tell (/proc, some network mounts); a file without a name on Linux
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        where = f"output folder {folder} is not" if existing == path else f"{existing} is not"
        raise OutputError(
            f"{where} writable: creating a file there failed ({error.strerror or error})"
        ) from None


def _read_only(folder) -> bool:
    """Whether `folder` is on a file system mounted read-only, where access() says only that
    writing is refused, as for a folder one lacks the permission for."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def output_paths(output_format, output_dir, audio_path):
    from .writers import WRITERS

    formats = list(WRITERS) if output_format == "all" else [output_format]
    return [WRITERS[name](output_dir).output_path(audio_path) for name in formats]


def check_targets(output_format, output_dir, audio_path, inputs=frozenset()):
    """Before decoding a file: none of its transcripts may be a folder (os.replace could not put a
    file there) or a read-only file, have a name longer than the file system takes (some formats
    were written and others not, after the whole decode), or be one of the run's `inputs`
    (real_paths: an audio file named talk.txt would be lost to talk.wav's transcript)."""
    longest = _longest_name(output_dir)
    for target in output_paths(output_format, output_dir, audio_path):
        if os.path.isdir(target):
            raise OutputError(f"cannot write {target}: it is a folder")
        # a transcript is written whole and put in place, which a read-only file does not stop:
        # openai's writers, opening it, fail on it and leave it as it is (one write-protected for
        # everyone is kept from root too)
        if os.path.isfile(target) and (
            not os.access(target, os.W_OK) or not os.stat(target).st_mode & 0o222
        ):
            raise OutputError(f"cannot write {target}: it is read-only")
        real = os.path.realpath(target)
        if real in inputs:
            itself = real == os.path.realpath(audio_path)
            which = "the audio input itself" if itself else "an input of this run"
            raise OutputError(f"cannot write {target}: it is {which}")
        if len(os.fsencode(os.path.basename(target))) > longest:
            raise OutputError(
                f"cannot write {target}: its name is longer than the {longest} bytes the file "
                "system takes"
            )


def real_paths(paths) -> frozenset:
    """The files `paths` name, as check_targets compares them."""
    return frozenset(os.path.realpath(path) for path in paths)


def _longest_name(folder) -> int:
    """NAME_MAX where `folder` is (or will be created)."""
    existing = os.path.abspath(folder)
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    try:
        return os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def distinct_inputs(paths):
    """`paths` without a file given twice under one name (it is transcribed once)."""
    kept, seen = [], set()
    for path in paths:
        key = (_stem(path), os.path.realpath(path))
        if key not in seen:
            seen.add(key)
            kept.append(path)
    return kept


def _stem(path) -> str:
    """The name an input's transcripts are written under (writers.ResultWriter.output_path)."""
    return os.path.splitext(os.path.basename(path))[0]


class OutputOwners:
    """Whose transcripts each output name holds: the first input written under it. openai's CLI
    writes a/x.wav's and then b/x.wav's into one x.txt; here b/x.wav is not transcribed once
    a/x.wav's transcripts are written, and is when a/x.wav failed (nothing of it to overwrite)."""

    def __init__(self):
        self._owners = {}

    def clash(self, path):
        """The one-line error of an input whose transcripts would overwrite another's, else None."""
        owner = self._owners.get(_stem(path))
        if owner is None:
            return None
        return f"{path}: not transcribed: its transcripts would overwrite {owner}'s"

    def written(self, path):
        self._owners.setdefault(_stem(path), path)

    def next_round(self, paths):
        """(the inputs to transcribe together now: the first of each output name not yet written,
        the inputs that wait for them, the others' one-line errors), each in the given order."""
        now, later, errors, names = [], [], [], set()
        for path in paths:
            clash = self.clash(path)
            if clash is not None:
                errors.append(clash)
                continue
            (later if _stem(path) in names else now).append(path)
            names.add(_stem(path))
        return now, later, errors
