"""Transcribe an audio file to SubRip subtitles (.srt) with the Python API and whisperms.writers.

    python examples/transcribe_to_srt.py [AUDIO] [--model tiny.en] [--output_dir .]

AUDIO defaults to the JFK clip in tests/data. --model is a name (looked up in weights/NAME, else
downloaded from the Hugging Face hub and converted once) or a whisperms, Hugging Face or CTranslate2
folder. A progress bar runs on stderr (openai's verbose=False); the path of the .srt file is printed
at the end.
"""

import argparse
from pathlib import Path

from whisperms import load_model
from whisperms.writers import get_writer

DEFAULT_AUDIO = (
    Path(__file__).resolve().parent.parent / "tests" / "data" / "jfk_inaugural_1961.flac"
)


def main():
    parser = argparse.ArgumentParser(description="Transcribe an audio file to .srt subtitles.")
    parser.add_argument("audio", nargs="?", default=str(DEFAULT_AUDIO))
    parser.add_argument("--model", default="tiny.en", help="model name or checkpoint folder")
    parser.add_argument("--output_dir", default=".")
    args = parser.parse_args()

    model = load_model(args.model)
    # a TranscriptionResult; to_dict() is openai's layout
    result = model.transcribe(args.audio, verbose=False)
    write_srt = get_writer("srt", args.output_dir)
    path = write_srt(result.to_dict(), args.audio)  # written whole or not at all
    print(path)


if __name__ == "__main__":
    main()
