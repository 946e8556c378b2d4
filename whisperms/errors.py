"""Errors a user can act on. Each carries a one-line message; the CLI prints it and exits non-zero."""


class WhispermsError(Exception):
    """Base class: anything raised as this (or a subclass) is a user-facing, one-line problem."""


class AudioError(WhispermsError):
    """A file that is missing, unreadable, or not decodable as audio."""


class CheckpointError(WhispermsError):
    """A checkpoint folder that is missing, of an unknown kind, corrupted, or mismatched with the network."""


class OptionsError(WhispermsError, ValueError):
    """An option value or a combination of options that cannot work (unknown language, impossible settings)."""
