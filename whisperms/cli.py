"""The `whisperms` command: openai-whisper's options and defaults, plus `convert` and `models`
subcommands.

Every user-facing problem ends as one line on stderr: exit 2 for usage (bad option values or
combinations), exit 1 for runtime failures (a missing, unreadable or undecodable file, an unwritable
output folder, a bad checkpoint); other files in a batch still run. Warnings are one line too
("whisperms: warning: ...").
"""

import io
import math
import os
import signal
import sys
import warnings
from pathlib import Path

from .cli_args import EXIT_USAGE, Parser, show_progress, transcribe_parser
from .errors import (
    AudioError,
    OptionsError,
    OutputError,
    RuntimeMemoryError,
    WhispermsError,
    WhispermsWarning,
    check_working_folder,
    ctrl_c_ends,
    end_stopped,
    exit_now,
    memory_error,
    one_line,
    out_of_memory,
    raise_terminated,
    stopped_by,
    unforeseen,
)
from .output_files import (
    OutputOwners,
    check_output_folder,
    check_targets,
    distinct_inputs,
    real_paths,
)

# The most fallback temperatures --temperature_increment_on_fallback may make (an increment of
# 0.001 from 0): a tinier one made millions, built and checked before any file was read.
MAX_TEMPERATURES = 1001
EXIT_RUNTIME = 1

# The input that stands for standard input, as openai's CLI (through ffmpeg) and whisper.cpp's take
# it; its transcripts are written as theirs are, under its name: -.txt, -.srt, ...
STDIN = "-"


def _temperatures(args):
    """openai's CLI: the first temperature, then steps of the increment up to 1.0 (just the first
    without one)."""
    from .transcribe import check_number

    first = check_number("--temperature", args.temperature, low=0)
    increment = check_number(
        "--temperature_increment_on_fallback",
        args.temperature_increment_on_fallback,
        low=0,
        strict_low=True,
        optional=True,
    )
    if increment is None:
        return (first,)
    # as many as np.arange(first, 1.0 + 1e-6, increment) holds: never past 1.0
    steps = math.ceil((1.0 + 1e-6 - first) / increment) if first < 1.0 else 1
    if steps > MAX_TEMPERATURES:
        raise OptionsError(
            f"--temperature_increment_on_fallback {increment:g} makes {steps} temperatures to try "
            f"from {first:g} to 1.0, more than {MAX_TEMPERATURES}: give a larger increment"
        )
    return tuple(round(first + i * increment, 6) for i in range(steps))


WORD_OPTIONS = ("highlight_words", "max_line_count", "max_line_width", "max_words_per_line")


def _writer_args(args):
    """The subtitle layout options, checked: openai's CLI refuses each without --word_timestamps (an
    option given a value that means "unset", False or 0, is not refused, as there) and warns of
    those another makes useless; the line limits are counts, so >= 1."""
    writer_args = {name: getattr(args, name) for name in WORD_OPTIONS}
    for name in ("max_line_count", "max_line_width", "max_words_per_line"):
        if writer_args[name] is not None and writer_args[name] < 0:
            raise OptionsError(f"--{name} must be 0 (no limit) or more, got {writer_args[name]}")
        writer_args[name] = writer_args[name] or None  # 0 is "unset", as openai's writers read it
    if not args.word_timestamps:
        for name in WORD_OPTIONS:
            if writer_args[name]:
                raise OptionsError(f"--{name} requires --word_timestamps True")
    # warnings, as openai's CLI gives them; but openai warns of --max_words_per_line with
    # --max_line_width alone, where its writers (and ours) still cut cues every N words: only
    # --max_line_count beside them reflows the words without it
    if writer_args["max_line_count"] and not writer_args["max_line_width"]:
        warnings.warn("--max_line_count has no effect without --max_line_width", WhispermsWarning)
    lines = writer_args["max_line_width"] and writer_args["max_line_count"]
    if writer_args["max_words_per_line"] and lines:
        warnings.warn(
            "--max_words_per_line has no effect with --max_line_width and --max_line_count",
            WhispermsWarning,
        )
    return writer_args


def _transcribe_options(args):
    """Every transcription option checked (transcribe.transcribe_options), without the model or
    MindSpore."""
    from .transcribe import transcribe_options

    if args.threads < 0:
        raise OptionsError(
            f"--threads must be 0 (all cores) or a positive number of cores, got {args.threads}"
        )
    if (
        args.model_dir is not None
        and os.path.exists(args.model_dir)
        and not os.path.isdir(args.model_dir)
    ):
        raise OptionsError(f"--model_dir {args.model_dir} is not a folder")
    temperatures = _temperatures(args)
    decode = dict(
        task=args.task,
        language=args.language,
        best_of=args.best_of,
        beam_size=args.beam_size,
        patience=args.patience,
        length_penalty=args.length_penalty,
        suppress_tokens=args.suppress_tokens,
        fp16=args.fp16,
        repetition_penalty=args.repetition_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size,
        hotwords=args.hotwords,
    )
    return transcribe_options(
        temperature=temperatures,
        compression_ratio_threshold=args.compression_ratio_threshold,
        logprob_threshold=args.logprob_threshold,
        no_speech_threshold=args.no_speech_threshold,
        condition_on_previous_text=args.condition_on_previous_text,
        initial_prompt=args.initial_prompt,
        carry_initial_prompt=args.carry_initial_prompt,
        word_timestamps=args.word_timestamps,
        prepend_punctuations=args.prepend_punctuations,
        append_punctuations=args.append_punctuations,
        clip_timestamps=args.clip_timestamps,
        hallucination_silence_threshold=args.hallucination_silence_threshold,
        vad_filter=args.vad_filter,
        vad_parameters=args.vad_parameters,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        **decode,
    )


def _as_cli_option(message, parser):
    """Keywords of transcribe_options' messages ("best_of must be ...") as --best_of: the first
    word, and later ones with an underscore (plain words such as "language" stay)."""
    names = {action.dest for action in parser._actions if action.option_strings}
    words = message.split(" ")
    cli = [
        f"--{w}" if w.rstrip(":,.)") in names and (i == 0 or "_" in w) else w
        for i, w in enumerate(words)
    ]
    return " ".join(cli)


def _transcribe_main(argv):
    """The options, every input file and the output folder are checked before MindSpore is imported
    and the model loaded, so a typo costs no start-up; only what needs the model (the device, the
    model name, an English-only model given another language) is checked after loading it."""
    from .audio_files import check_audio_file

    parser = transcribe_parser()
    args = parser.parse_args(argv)
    try:
        writer_args = _writer_args(args)
        options = _transcribe_options(args)
    except OptionsError as error:
        return _usage(_as_cli_option(str(error), parser))
    status, paths = 0, []
    for path in args.audio:
        try:
            paths.append(_check_stdin() if path == STDIN else check_audio_file(path, pipes=True))
        except AudioError as error:
            status = _fail(str(error))
    try:
        check_output_folder(args.output_dir)
    except OutputError as error:
        return _fail(str(error))
    paths = distinct_inputs(paths)
    if not paths:
        return status

    with ctrl_c_ends("whisperms"):
        from . import load_model
    try:
        model = load_model(
            args.model,
            device=args.device,
            dtype=args.dtype,
            download_root=args.model_dir,
            attn_implementation=args.attn_implementation,
            threads=args.threads or None,
        )
    except OptionsError as error:
        return _usage(str(error))
    except WhispermsError as error:
        return _fail(str(error))
    if args.verbose:
        rt = model.runtime
        _to_stderr(
            f"whisperms: {model.name or args.model} on {rt.device}, {rt.dtype}, attention "
            f"{rt.attn_implementation}, conv {rt.conv}, cores {rt.threads or 'all'}"
        )
    from .transcribe import Transcriber
    from .writers import get_writer

    writer, owners = get_writer(args.output_format, args.output_dir), OutputOwners()
    inputs = real_paths(paths)
    if options.batched:
        run = _transcribe_batched(model, paths, options, args, writer, writer_args, owners, inputs)
        return run or status
    for path in paths:
        clash = owners.clash(path)
        if clash is not None:
            status = _fail(clash)
            continue
        try:
            check_targets(args.output_format, args.output_dir, path, inputs)
            transcriber = Transcriber(
                model,
                _opened(path),
                verbose=args.verbose,
                progress=show_progress(args.verbose),
                options=options,
            )
            result = transcriber.run()
            _write(writer, result, path, args.output_dir, writer_args)
            owners.written(path)
        except OptionsError as error:  # what needs the model: the same for every file
            return _usage(str(error))
        except WhispermsError as error:
            _raise_if_stopped(error)
            status = _fail(_about(path, error))
        except OSError as error:  # writing: the folder checked above can still change, or fill up
            _raise_if_stopped(error)
            status = _fail(_unwritable(path, args.output_dir, error))
        except Exception as error:
            status = _unforeseen(path, error)
    return status


def _transcribe_batched(model, paths, options, args, writer, writer_args, owners, inputs):
    """--batch_size: every file's windows share the batches; each file is written when its last
    window is done. Inputs written under one name go in turns: one waits for the one before it
    (it is transcribed only if that one failed). Returns the exit status."""
    from .batched import BatchedTranscriber
    from .segments import print_language, print_line, print_segment

    # several files finish in any order: each one's segments under its name
    named = args.verbose and len(paths) > 1
    try:
        transcriber = BatchedTranscriber(
            model,
            verbose=args.verbose and not named,
            progress=show_progress(args.verbose),
            options=options,
        )
    except OptionsError as error:  # what needs the model
        return _usage(str(error))
    except WhispermsError as error:
        return _fail(str(error))
    status = 0
    while paths:
        now, paths, clashes = owners.next_round(paths)
        for message in clashes:
            status = _fail(message)
        ready = []
        for path in now:
            try:
                check_targets(args.output_format, args.output_dir, path, inputs)
                ready.append(path)
            except OutputError as error:
                status = _fail(_about(path, error))
        opened = []
        for path in ready:
            try:
                opened.append((path, _opened(path)))
            except AudioError as error:
                status = _fail(_about(path, error))
        ready = [path for path, _ in opened]
        for index, result in transcriber.results([source for _, source in opened]):
            path = ready[index]
            if isinstance(result, WhispermsError):
                status = _fail(_about(path, result))
                continue
            if named:
                print_line(f"{path}:")
                if result.info.all_language_probs is not None:  # detected, as openai's line says
                    print_language(result.language)
                for segment in result.segments:
                    print_segment(segment)
            try:
                _write(writer, result, path, args.output_dir, writer_args)
                owners.written(path)
            except OSError as error:
                _raise_if_stopped(error)
                status = _fail(_unwritable(path, args.output_dir, error))
            except Exception as error:
                status = _unforeseen(path, error)
    return status


def _check_stdin() -> str:
    """STDIN if it can be read, as check_audio_file returns a path: standard input is open and not
    a terminal (where reading would wait for ever for someone to type audio); else an AudioError
    saying so."""
    if sys.stdin is None or sys.stdin.closed:
        raise AudioError("-: standard input is closed: pipe the audio in, or name a file")
    if sys.stdin.isatty():
        raise AudioError(
            "-: standard input is a terminal: pipe the audio in "
            "(ffmpeg -i talk.mp4 -f wav - | whisperms -), or name a file"
        )
    return STDIN


def _opened(path):
    """What transcribe takes for an input: "-" is standard input, read to its end when decoded; a
    pipe given by name (bash's <(...)) is read to its end here, as openai-whisper's ffmpeg reads
    one; an AudioError if it cannot be."""
    from .audio_files import is_pipe

    if path == STDIN:
        return sys.stdin.buffer
    if not is_pipe(path):
        return path
    try:
        with open(path, "rb") as pipe:
            content = io.BytesIO(pipe.read())
    except OSError as error:
        raise AudioError(f"cannot read audio file {path}: {error.strerror or error}") from None
    content.name = path  # what messages call it
    return content


def _write(writer, result, path, output_dir, writer_args):
    os.makedirs(output_dir, exist_ok=True)
    writer(result.to_dict(), path, **writer_args)


def _raise_if_stopped(error):
    """An error that came out of Ctrl-C or SIGTERM (a cleanup's, in its place) ends the run: main
    says so."""
    if stopped_by(error) is not None:
        raise error


def _unforeseen(path, error):
    """A failure of one file that no check foresaw (a bug): its one line, and the run goes on with
    the next file, as openai-whisper's CLI skips such a file (the batched mode's reading does the
    same: batch_feed.outcome); a signal or memory running out still ends the run (main says which).
    Returns the exit status."""
    _raise_if_stopped(error)
    if out_of_memory(error):
        raise error
    return _fail(_about(path, unforeseen(error)))


def _about(path, error):
    return f"{path}: {error}" if path not in str(error) else str(error)


def _unwritable(path, output_dir, error):
    return f"{path}: cannot write its transcript to {output_dir}: {error.strerror or error}"


def _convert_main(argv):
    p = Parser(
        prog="whisperms convert",
        description="Convert a Hugging Face or CTranslate2 Whisper folder to whisperms.",
    )
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    from .convert import convert

    try:
        out = convert(args.src, args.dst, dtype=args.dtype, overwrite=args.overwrite)
    except WhispermsError as error:
        return _fail(str(error))
    print(out)
    return 0


def _models_main(argv):
    parser = Parser(prog="whisperms models", description="Known model names and local copies.")
    parser.add_argument(
        "--model_dir", default=None, help="where named models are looked up (as for transcribing)"
    )
    args = parser.parse_args(argv)
    from .hub import ALIASES, RELEASED_DIMENSIONS, is_checkpoint, weights_root

    root = Path(args.model_dir).expanduser() if args.model_dir else weights_root()
    for name in RELEASED_DIMENSIONS:
        local = root / name
        found = is_checkpoint(local)
        size = sum(f.stat().st_size for f in local.iterdir() if f.is_file()) if found else 0
        print(f"{name:16s} {f'{size / 1e6:.0f} MB at {local}' if found else 'not downloaded'}")
    for alias, name in ALIASES.items():
        print(f"{alias:16s} -> {name}")
    return 0


def _usage(message):
    _to_stderr(f"whisperms: error: {one_line(message)}")
    return EXIT_USAGE


def _fail(message):
    _to_stderr(f"whisperms: error: {one_line(message)}")
    return EXIT_RUNTIME


def _to_stderr(line: str):
    """A line on stderr. Once stderr cannot be written (its reader gone: `whisperms *.wav 2>&1 |
    head -1`), it goes to /dev/null and the work goes on: losing the console must not lose the
    transcripts, as losing stdout does not (segments.print_line); the exit status still says what
    failed."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):  # its reader gone, or a closed file
        _stderr_gone()
    except OSError:  # a full disk or non-blocking pipe: this line is lost, not the next ones
        pass


def _stderr_gone():
    """fd 2 (or sys.stderr) on /dev/null from now on: what is buffered, and what Python flushes
    at exit, would fail again."""
    sink = open(os.devnull, "w")
    try:
        os.dup2(sink.fileno(), sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor of its own
        sys.stderr = sink
    else:
        sink.close()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line on stderr; one not from whisperms says its category."""
    text = str(message).splitlines()[0] if str(message) else category.__name__
    ours = issubclass(category, WhispermsWarning) or text.startswith("whisperms: ")
    text = text.removeprefix("whisperms: ")
    tag = "" if ours else f" ({category.__name__})"
    _to_stderr(f"whisperms: warning: {text}{tag}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        check_working_folder()
    except OptionsError as error:
        return _fail(str(error))
    commands = {"convert": _convert_main, "models": _models_main}
    saved = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        previous = signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:  # not the main thread: the signal is not this call's to handle
        previous = None
    try:
        if argv and argv[0] in commands:
            return commands[argv[0]](argv[1:])
        return _transcribe_main(argv)
    except MemoryError as error:  # a huge beam_size or best_of, say: what is written stays
        first = str(error).splitlines()[0] if str(error) else "a memory allocation failed"
        status = _fail(f"out of memory: {first}")
        if isinstance(error, RuntimeMemoryError):
            exit_now(status)  # MindSpore's exit hooks wait for ever after its runtime's failure
        return status
    except BrokenPipeError:  # `whisperms models | head -1`: a reader that has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except BaseException as error:  # also what a library's cleanup raised in Ctrl-C's place
        memory = memory_error(error)
        if memory is not None:  # MindSpore's runtime failed an allocation
            exit_now(_fail(f"out of memory: {memory}"))
        how = stopped_by(error)
        if how is None:
            raise
        return end_stopped("whisperms", how)
    finally:
        warnings.showwarning = saved
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
