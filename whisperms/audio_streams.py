"""What a compressed file's own structure says that libsndfile does not tell: whether an MP3 file
declares its length (a Xing, Info or VBRI header), and where the streams of a file made of several
one after another begin (a chained Ogg file, as internet radio recordings and `cat a.ogg b.ogg`
make; MP3 files joined with `cat`, whose first Xing header gives the first file's length).
libsndfile reads the first stream of such a file only, and ffmpeg all of them; `decode_file`
decodes each stream here found in turn.

Everything here reads headers from a binary file object (`AudioSource.open()`) and never fails on
a damaged file: what cannot be read is taken as no further stream.
"""

import struct
from typing import List, Optional

# Where in an MP3 file, after its ID3v2 tag, a Xing, Info or VBRI header (the stream's length)
# lies: within the first frame.
MP3_FIRST_FRAME_BYTES = 4096
_LENGTH_TAGS = (b"Xing", b"Info")
_VBRI = b"VBRI"
# Xing/Info flags: the frame count and the byte count follow the flags when set
_XING_FRAMES, _XING_BYTES = 0x1, 0x2
# an Ogg page header: capture pattern, version, header type, granule position, serial number,
# page sequence number, checksum, segment count (27 bytes), then the segment table
_OGG_PAGE = struct.Struct("<4sBBqIIIB")
_OGG_BEGINS, _OGG_ENDS = 0x2, 0x4
# Bytes searched ahead for the next page where a page header does not read (damage)
_OGG_RESYNC_BYTES = 1 << 16
# At most this many streams are looked for in one file: a bound of sense
MAX_STREAMS = 1000


def id3v2_end(head: bytes) -> int:
    """Where the audio starts after an ID3v2 tag at the file's start (`head`: its first 10 bytes),
    0 without one. The tag's size is a synchsafe integer; a footer adds 10 bytes."""
    if len(head) < 10 or head[:3] != b"ID3":
        return 0
    size = sum((byte & 0x7F) << (7 * (3 - i)) for i, byte in enumerate(head[6:10]))
    return 10 + size + (10 if head[5] & 0x10 else 0)


def length_declared(source, file_format: str) -> bool:
    """Whether libsndfile's length of a file other than WAV is one the file declares (so that
    decoding less means damage), not its estimate (an MP3 without a Xing, Info or VBRI header).
    `source`: an audio_files.AudioSource."""
    if file_format != "MP3":
        return True
    with source.open() as raw:
        return mp3_declares_length(raw)


def mp3_declares_length(raw) -> bool:
    """Whether the MP3 stream at the file's start declares its length (else libsndfile guesses it
    from the file's size, counting cover art as audio)."""
    first = _first_frame(raw, 0)[1]
    return any(tag in first for tag in (*_LENGTH_TAGS, _VBRI))


def _first_frame(raw, position: int):
    """(where the MP3 stream at `position` starts after its ID3v2 tag, the bytes from there that
    hold its first frame)."""
    raw.seek(position)
    start = position + id3v2_end(raw.read(10))
    raw.seek(start)
    return start, raw.read(MP3_FIRST_FRAME_BYTES)


def later_streams(raw, size: int, file_format: str) -> List[int]:
    """Where the streams after the first begin, in bytes from the file's start ([] for a file of
    one stream, and for formats other than Ogg and MP3)."""
    try:
        if file_format == "OGG":
            return _ogg_links(raw, size)
        if file_format == "MP3":
            return _mp3_links(raw, size)
    except (OSError, ValueError, struct.error):
        pass
    return []


def _ogg_links(raw, size: int) -> List[int]:
    """Chain boundaries of an Ogg file: a page beginning a stream that follows a page ending one.
    Streams multiplexed at the start (several beginning pages in a row) are one link."""
    starts, position, ended = [], 0, False
    while position + _OGG_PAGE.size <= size and len(starts) < MAX_STREAMS:
        raw.seek(position)
        header = raw.read(_OGG_PAGE.size)
        capture, _, kind, *_, segments = _OGG_PAGE.unpack(header)
        if capture != b"OggS":
            found = _find(raw, b"OggS", position + 1, size)
            if found is None:
                break
            position, ended = found, False
            continue
        if kind & _OGG_BEGINS and ended:
            starts.append(position)
        ended = bool(kind & _OGG_ENDS)
        table = raw.read(segments)
        if len(table) < segments:
            break
        position += _OGG_PAGE.size + segments + sum(table)
    return starts


def _mp3_links(raw, size: int) -> List[int]:
    """Where MP3 files joined end to end begin again: after a stream whose Xing or Info header
    gives its length in bytes, when more follows that is an ID3v2 tag or an MPEG frame (an ID3v1
    tag of 128 bytes at the very end is not a stream)."""
    starts, position = [], 0
    while len(starts) < MAX_STREAMS:
        start, first = _first_frame(raw, position)
        length = _xing_bytes(first)
        if length is None:
            break
        end = start + length
        raw.seek(end)
        head = raw.read(10)
        if size - end <= 128 or not (head[:3] == b"ID3" or _frame_sync(head)):
            break
        starts.append(end)
        position = end
    return starts


def _xing_bytes(first: bytes) -> Optional[int]:
    """The byte count of a Xing or Info header in an MP3 stream's `first` frame, or None."""
    if not _frame_sync(first):
        return None
    for tag in _LENGTH_TAGS:
        at = first.find(tag, 4, 64)  # after the frame header and side information
        if at >= 0 and len(first) >= at + 16:
            flags = struct.unpack(">I", first[at + 4 : at + 8])[0]
            if not flags & _XING_BYTES:
                return None
            field = at + 8 + (4 if flags & _XING_FRAMES else 0)
            return struct.unpack(">I", first[field : field + 4])[0] or None
    return None


def _frame_sync(head: bytes) -> bool:
    """An MPEG audio frame header: 11 set bits, then a layer that is not the reserved 00."""
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 != 0


def _find(raw, pattern: bytes, start: int, size: int) -> Optional[int]:
    """The first position of `pattern` from `start`, searched up to _OGG_RESYNC_BYTES ahead."""
    raw.seek(start)
    window = raw.read(min(_OGG_RESYNC_BYTES, size - start))
    at = window.find(pattern)
    return None if at < 0 else start + at
