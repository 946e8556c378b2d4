"""Word-level timestamps: when each word starts and ends, and how sure the model is of it.

    python examples/word_timestamps.py [AUDIO] [--model tiny.en]

AUDIO defaults to the JFK clip in tests/data; --model is a name or a checkpoint folder. Prints one
line per word, `start end probability word` (seconds), then the whole text. The times come from the
cross-attention of the checkpoint's alignment heads, aligned to the audio with dynamic time warping,
as in openai-whisper.
"""

import argparse
from pathlib import Path

from whisperms import load_model

DEFAULT_AUDIO = (
    Path(__file__).resolve().parent.parent / "tests" / "data" / "jfk_inaugural_1961.flac"
)


def main():
    parser = argparse.ArgumentParser(description="Print word-level timestamps of a transcription.")
    parser.add_argument("audio", nargs="?", default=str(DEFAULT_AUDIO))
    parser.add_argument("--model", default="tiny.en", help="model name or checkpoint folder")
    args = parser.parse_args()

    model = load_model(args.model)
    result = model.transcribe(args.audio, word_timestamps=True)
    print(f"{'start':>7} {'end':>7} {'prob':>5}  word")
    for segment in result.segments:
        for word in segment.words:  # dicts: word, start, end, probability
            print(
                f"{word['start']:7.2f} {word['end']:7.2f} {word['probability']:5.2f} {word['word']}"
            )
    print(result.text.strip())


if __name__ == "__main__":
    main()
