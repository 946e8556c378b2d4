"""Errors a user can act on. Each carries a one-line message; the CLI prints it and exits
non-zero."""


class WhispermsError(Exception):
    """Base class: anything raised as this (or a subclass) is a user-facing, one-line problem."""


class AudioError(WhispermsError):
    """Audio that cannot be used: a file that is missing, not a file, unreadable or not decodable,
    or an array of a shape or dtype `transcribe` does not take."""


class CheckpointError(WhispermsError):
    """A checkpoint folder that is missing, of an unknown kind, corrupted, or mismatched with the
    network."""


class OptionsError(WhispermsError, ValueError):
    """An option value or a combination of options that cannot work (unknown language, impossible
    settings)."""


class OutputError(WhispermsError):
    """An output folder or file that cannot be written (not a folder, no permission)."""


class WhispermsWarning(UserWarning):
    """Something whisperms repaired and went on with (e.g. non-finite audio samples); the CLI prints
    it as one line."""
