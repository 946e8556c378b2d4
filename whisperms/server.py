"""An OpenAI-compatible transcription server over the batched mode.

    whisperms-server --model tiny.en [--host 127.0.0.1] [--port 8000] [--batch_size 8]

`POST /v1/audio/transcriptions` and `POST /v1/audio/translations` take OpenAI's form fields (file,
model, language, prompt, response_format json/text/srt/vtt/verbose_json, temperature,
timestamp_granularities[]) and answer as OpenAI's API does, so its clients work unchanged;
`GET /v1/models` lists the model served. Errors are OpenAI's error object with status 400 (a bad
file or option) or 404 (another model).

Concurrent requests share batches (server_worker.py): requests that decode alike (task,
temperature, word timestamps) are one group, whose inputs go into an InputQueue that one worker
thread runs through a BatchedTranscriber (whisperms/batched.py); a request joins the next batch,
with its own language and prompt, and is answered as soon as its own audio is done.

As OpenAI's API: temperature 0 (the default) decodes with the temperature fallback, another value
at that temperature alone.
"""

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import warnings
from typing import Dict, List, Optional

from .batch_inputs import BatchInput
from .batched import DEFAULT_BATCH_SIZE
from .cli_args import Parser, optional
from .decoding import model_language
from .errors import (
    AudioError,
    OptionsError,
    UnforeseenError,
    WhispermsError,
    WhispermsWarning,
    check_working_folder,
    ctrl_c_ends,
    end_stopped,
    one_line,
    out_of_memory,
    stopped_by,
)
from .server_formats import json_answer, subtitles, verbose_json
from .server_worker import BatchingWorker
from .transcribe_options import check_number
from .upload_folder import UploadFolder

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
# The name OpenAI's clients send by default; accepted for the model served.
OPENAI_MODEL = "whisper-1"
# Larger uploads are refused (413). OpenAI's own limit is 25 MB; a self-hosted server takes longer
# recordings.
DEFAULT_MAX_UPLOAD_MB = 200
MAX_UPLOAD_MB = 1 << 20  # a terabyte: a bound of sense, as a body limit in bytes must be finite
MB = 1 << 20
# The longest prompt taken, in characters: Whisper reads only a prompt's last n_text_ctx // 2 - 1
# (223) tokens, and tokenizing a megabyte of text held up every request for seconds.
MAX_PROMPT_CHARS = 20000
# How often a request waiting for its result checks whether its client has gone; and the status
# logged for a request so given up (nginx's "client closed request": nothing is sent).
DISCONNECT_CHECK_SECONDS = 0.5
CLIENT_GONE = 499
# An upload from which nothing more has come for this long is answered 408 and its connection
# closed: a stalled or malicious client held a connection, and its partial upload, for ever.
UPLOAD_STALL_SECONDS = 60.0
# A request's body may exceed its file by this much (the form's other fields and the multipart
# framing) before it is refused unread.
BODY_SLACK = MB
# Seconds a refused request is told to wait before it retries (429's Retry-After, which OpenAI's
# clients honour): short, as a place frees whenever any request in flight is answered.
RETRY_AFTER_SECONDS = 1
# An upload's extension kept for its temporary file (the audio loader picks a decoder by it); any
# other name (too long for the file system, a NUL, a path) is dropped, not passed to the OS.
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,16}")
MAX_PORT = 65535


def _error(
    status: int,
    message: str,
    param: Optional[str] = None,
    code: Optional[str] = None,
    kind: str = "invalid_request_error",
    headers: Optional[Dict[str, str]] = None,
):
    from fastapi.responses import JSONResponse

    body = {"message": message, "type": kind, "param": param, "code": code}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _server_failure(error: BaseException, detail: Optional[str] = None):
    """A failure of the server's own (a bug, a full disk, memory): OpenAI's error object, not the
    framework's bare text, status 500. `detail`: what the message says of it (its type and text)."""
    detail = detail or f"{type(error).__name__}: {one_line(str(error))}"
    message = f"the server failed: {detail}"
    # OpenAI's client retries a 500 twice unless told not to: the same request fails the same
    # way, each time after its decode; memory may be free on a later try
    retry = out_of_memory(error)
    headers = None if retry else {"x-should-retry": "false"}
    return _error(500, message, kind="server_error", headers=headers)


class _BodyLimit:
    """ASGI middleware: a request whose body is over `limit` bytes is refused (413, OpenAI's error
    object) as soon as that is known, at once from its Content-Length, or when its streamed body
    passes the limit, instead of after the framework has spooled all of it to disk; and one whose
    body stops coming for `stall` seconds is answered 408."""

    def __init__(self, app, limit: int, files_mb: float, stall: float):
        self.app, self.limit, self.files_mb, self.stall = app, limit, files_mb, stall

    def _message(self, size: int, whole: bool = True) -> str:
        """`size`: the body's declared length, or (not `whole`) how much of it came before it
        passed the limit."""
        return (
            f"the request body is {'' if whole else 'over '}{size / MB:.1f} MB; this server takes "
            f"files of up to {self.files_mb:g} MB"
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.datastructures import Headers
        from starlette.exceptions import HTTPException

        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            # refused before any of the body is read (a client sending Expect: 100-continue
            # never sends it)
            return await _error(413, self._message(int(length)), "file")(scope, receive, send)
        received, complete = 0, False

        async def counted():
            nonlocal received, complete
            if complete:  # after the body: a wait for the client's disconnect, however long
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.stall)
            except asyncio.TimeoutError:
                raise HTTPException(
                    408, f"the upload stalled: nothing more came for {self.stall:g} s"
                ) from None
            complete = not message.get("more_body", False)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # FastAPI passes an HTTPException on unchanged
                    raise HTTPException(413, self._message(received, whole=False))
            return message

        await self.app(scope, counted, send)


async def _answer_or_gone(request, worker: BatchingWorker, future):
    """The request's result, or None once its client has gone (checked every
    DISCONNECT_CHECK_SECONDS while it waits): the request is then given up, so that its audio is
    decoded no further and other requests do not wait behind it."""
    waiting = asyncio.wrap_future(future)
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_CHECK_SECONDS)
        if done:
            return waiting.result()
        if await request.is_disconnected():
            worker.cancel(future)
            return None


def _checked_limit(limit) -> Optional[int]:
    """max_concurrent_requests: None, or an integer >= 1 (else OptionsError)."""
    return check_number("max_concurrent_requests", limit, low=1, integer=True, optional=True)


def _checked_upload_limit(megabytes) -> float:
    """max_upload_mb: a finite number of megabytes above 0 (else OptionsError)."""
    return check_number("max_upload_mb", megabytes, low=0, high=MAX_UPLOAD_MB, strict_low=True)


def _busy(limit: int):
    """OpenAI's answer to too many requests (429, its clients retry after Retry-After)."""
    return _error(
        429,
        f"the server is busy: it takes {limit} request{'s' if limit > 1 else ''} at a time "
        "(--max_concurrent_requests); retry later",
        code="rate_limit_exceeded",
        kind="requests",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def create_app(
    model,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    worker: Optional[BatchingWorker] = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_concurrent_requests: Optional[int] = None,
    upload_stall_seconds: float = UPLOAD_STALL_SECONDS,
    **options,
):
    """The FastAPI app serving `model` (a loaded whisperms model); `options` are transcribe's,
    for every request (a request's language, prompt, temperature and timestamp granularities
    override theirs). A file over `max_upload_mb` is refused (413), and so is a request arriving
    while `max_concurrent_requests` are in flight (429; None: no limit), and an upload from which
    nothing has come for `upload_stall_seconds` (408)."""
    from fastapi import FastAPI, File, Form, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    max_upload_mb = _checked_upload_limit(max_upload_mb)
    upload_stall_seconds = check_number(
        "upload_stall_seconds", upload_stall_seconds, low=0, strict_low=True
    )

    limit = _checked_limit(max_concurrent_requests)
    worker = worker or BatchingWorker(model, batch_size=batch_size, **options)

    def full() -> bool:
        return limit is not None and worker.queued() >= limit

    name = model.name or "whisper"
    app = FastAPI(title="whisperms")
    # the multipart parser's warning on a malformed body (a bare line on stderr) restates the 400
    # its client is answered with (its logger's name before python-multipart 0.0.13: multipart)
    for parser_log in ("python_multipart", "multipart"):
        logging.getLogger(parser_log).setLevel(logging.ERROR)
    app.state.worker = worker
    # uploads on disk until their request ends (path: the name it was uploaded under), in a
    # folder of the server's own; what a forced exit leaves, main() removes with the folder
    app.state.uploads = uploads = {}
    app.state.upload_folder = folder = UploadFolder()
    body_limit = int(max_upload_mb * MB) + BODY_SLACK
    app.add_middleware(
        _BodyLimit, limit=body_limit, files_mb=max_upload_mb, stall=upload_stall_seconds
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, error):
        # a missing or malformed form field: OpenAI's error object, not the framework's
        problem = error.errors()[0]
        field = str(problem["loc"][-1]) if problem.get("loc") else None
        message = problem["msg"]
        if field == "file" and "UploadFile" in message:  # pydantic's words for a text field
            message = "must be an uploaded file, not a text field"
        return _error(400, f"{field}: {message}" if field else message, field)

    @app.exception_handler(HTTPException)
    async def framework_error(request, error):
        # the framework's own refusals (unknown path, wrong method, a malformed multipart body):
        # OpenAI's error object too, not {"detail": ...}
        return _error(error.status_code, str(error.detail), headers=error.headers)

    @app.exception_handler(Exception)
    async def server_error(request, error):
        # a failure of the server's own (a bug, a full disk; logged with its traceback)
        return _server_failure(error)

    # OpenAI's Model object; created: when this server began serving it (Unix seconds)
    served = {"id": name, "object": "model", "created": int(time.time()), "owned_by": "whisperms"}

    def not_served(model_name: str):
        return _error(
            404,
            f"model '{model_name}' is not served here; this server serves '{name}'",
            "model",
            "model_not_found",
        )

    @app.get("/health")
    async def health():
        # a load balancer's or an orchestrator's probe: the server listens only once the model is
        # loaded, and a worker that no longer decodes would leave every request waiting
        if not worker.alive():
            return _error(503, "the decoding thread is not running", kind="server_error")
        return {"status": "ok", "model": name, "queued": worker.queued()}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [served]}

    @app.get("/v1/models/{model_id}")
    async def model_info(model_id: str):
        # under the name asked for, as OpenAI answers
        return (
            {**served, "id": model_id} if model_id in (name, OPENAI_MODEL) else not_served(model_id)
        )

    async def handle(
        request: Request,
        task: str,
        file: UploadFile,
        model_name: str,
        language: Optional[str],
        prompt: Optional[str],
        response_format: str,
        temperature: float,
        granularities: List[str],
    ):
        if not (model_name or "").strip():  # as OpenAI: the field is required
            return _error(400, "you must provide a model parameter", "model")
        if model_name not in (name, OPENAI_MODEL):
            return not_served(model_name)
        if response_format not in RESPONSE_FORMATS:
            return _error(
                400,
                f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, got "
                f"'{response_format}'",
                "response_format",
            )
        unknown = [g for g in granularities if g not in GRANULARITIES]
        if unknown:
            return _error(
                400,
                f"timestamp_granularities[] must be 'segment' or 'word', got '{unknown[0]}'",
                "timestamp_granularities[]",
            )
        if prompt and len(prompt) > MAX_PROMPT_CHARS:
            return _error(
                400,
                f"prompt is {len(prompt)} characters; this server takes up to {MAX_PROMPT_CHARS} "
                "(Whisper reads only the last 223 tokens of a prompt)",
                "prompt",
            )
        if not 0 <= temperature <= 1:
            return _error(
                400, f"temperature must be between 0 and 1, got {temperature}", "temperature"
            )
        words = "word" in granularities
        if words and response_format != "verbose_json":
            return _error(
                400,
                "timestamp_granularities[] needs response_format 'verbose_json'",
                "timestamp_granularities[]",
            )
        request_options = {"task": task, "word_timestamps": words}
        if temperature > 0:
            request_options["temperature"] = temperature
        if file.size is not None and file.size > max_upload_mb * MB:
            return _error(
                413,
                f"the file is {file.size / MB:.1f} MB; this server takes files of up to "
                f"{max_upload_mb:g} MB",
                "file",
            )
        if language:
            try:  # checked here, so that the error names its field
                with warnings.catch_warnings():
                    # an English-only model transcribes another language as English (the
                    # worker's own check says so once in the log)
                    warnings.simplefilter("ignore", WhispermsWarning)
                    model_language(model, language)
            except OptionsError as error:
                return _error(400, str(error), "language")
        if full():
            return _busy(limit)
        suffix = os.path.splitext(file.filename or "")[1]
        suffix = suffix if _SUFFIX.fullmatch(suffix) else ""
        # a file on disk, as the audio loader reads containers by name (ffmpeg for the rest);
        # the upload is already spooled to disk by the framework past its first megabyte
        shown = file.filename or "the file"  # in messages, for the temporary copy's name
        tmp = tempfile.NamedTemporaryFile(suffix=suffix, dir=folder.path, delete=False)
        uploads[tmp.name] = shown
        try:  # a copy that fails (a full disk) is removed too
            with tmp:
                await run_in_threadpool(shutil.copyfileobj, file.file, tmp, MB)
            item = BatchInput(tmp.name, language=language or None, initial_prompt=prompt or None)
            # checked again with no await before the submit: requests that passed the first check
            # together while their uploads were copied cannot all get in
            if full():
                return _busy(limit)
            try:
                future = worker.submit(item, **request_options)
            except OptionsError as error:
                return _error(400, str(error))
            result = await _answer_or_gone(request, worker, future)
            if result is None:  # the client is gone: nobody to answer
                return Response(status_code=CLIENT_GONE)
        finally:
            with contextlib.suppress(FileNotFoundError):  # a forced exit's shutdown removed it
                os.unlink(tmp.name)
            uploads.pop(tmp.name, None)
        if isinstance(result, UnforeseenError):  # reading or cutting the upload failed: ours
            logging.getLogger(__name__).error("%s", shown, exc_info=result.cause)
            # its message's first line, naming the upload as the client did
            return _server_failure(result.cause, result.detail.replace(tmp.name, shown))
        if isinstance(result, WhispermsError):
            message = str(result).replace(tmp.name, shown)
            return _error(400, message, "file" if isinstance(result, AudioError) else None)
        if response_format == "text":
            return PlainTextResponse(result.text.strip() + "\n")
        if response_format in ("srt", "vtt"):
            return PlainTextResponse(subtitles(result, response_format))
        if response_format == "verbose_json":
            return JSONResponse(verbose_json(result, task, granularities))
        return json_answer(result, task)

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(
        request: Request,
        file: UploadFile = File(...),
        model: Optional[str] = Form(None),
        language: Optional[str] = Form(None),
        prompt: Optional[str] = Form(None),
        response_format: str = Form("json"),
        temperature: float = Form(0.0),
        timestamp_granularities: List[str] = Form([], alias="timestamp_granularities[]"),
        stream: bool = Form(False),
    ):
        # OpenAI ignores stream for whisper-1 and answers JSON, which a client waiting for events
        # cannot read: a 400 that says so instead
        if stream:
            return _error(400, "stream: streaming is not supported; leave stream out", "stream")
        return await handle(
            request,
            "transcribe",
            file,
            model,
            language,
            prompt,
            response_format,
            temperature,
            timestamp_granularities,
        )

    @app.post("/v1/audio/translations")
    async def translations(
        request: Request,
        file: UploadFile = File(...),
        model: Optional[str] = Form(None),
        prompt: Optional[str] = Form(None),
        response_format: str = Form("json"),
        temperature: float = Form(0.0),
    ):
        return await handle(
            request, "translate", file, model, None, prompt, response_format, temperature, []
        )

    return app


def main(argv=None) -> int:
    try:
        return _serve(argv)
    # Ctrl-C while the model loads, or the signal uvicorn raises again once it has shut down
    except BaseException as error:
        how = stopped_by(error)
        if how is None:
            raise
        return end_stopped("whisperms-server", how)


def _serve(argv) -> int:
    parser = Parser(
        prog="whisperms-server",
        description="An OpenAI-compatible transcription server (POST /v1/audio/transcriptions); "
        "concurrent requests share batches.",
    )
    parser.add_argument("--model", default="tiny.en", help="a model name or a model folder")
    parser.add_argument("--model_dir", default=None, help="where model names are found")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--batch_size", type=int, default=DEFAULT_BATCH_SIZE, help="windows decoded together"
    )
    # greedy by default, as OpenAI's API offers no beam option: a request's answer comes sooner
    parser.add_argument(
        "--beam_size", type=optional(int), default=None, help="beam search (None: greedy)"
    )
    parser.add_argument("--max_upload_mb", type=float, default=DEFAULT_MAX_UPLOAD_MB)
    parser.add_argument(
        "--max_concurrent_requests",
        type=int,
        default=None,
        help="requests in flight (queued or decoding) beyond which a request is refused with "
        "429 and Retry-After (default: no limit)",
    )
    args = parser.parse_args(argv)
    try:
        check_working_folder()
    except OptionsError as error:
        print(f"whisperms-server: error: {error}", file=sys.stderr)
        return 1
    try:
        import uvicorn
    except ImportError:
        print(
            "whisperms-server: needs the server extra: pip install 'whisperms[server]'",
            file=sys.stderr,
        )
        return 1
    try:
        # before the model loads: a bad value fails at once
        _checked_limit(args.max_concurrent_requests)
        _checked_upload_limit(args.max_upload_mb)
        if not 0 <= args.port <= MAX_PORT:
            raise OptionsError(f"--port must be from 0 to {MAX_PORT}, got {args.port}")
        _check_address(args.host, args.port)
        with ctrl_c_ends("whisperms-server"):
            from . import load_model
        model = load_model(args.model, download_root=args.model_dir)
        app = create_app(
            model,
            batch_size=args.batch_size,
            beam_size=args.beam_size,
            max_upload_mb=args.max_upload_mb,
            max_concurrent_requests=args.max_concurrent_requests,
        )
    except WhispermsError as error:
        print(f"whisperms-server: error: {error}", file=sys.stderr)
        return 1

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            # MindSpore's SIGINT handler (set again by every graph run) makes Ctrl-C a SIGTERM:
            # a second signal forces the exit, as uvicorn's second Ctrl-C does
            super().handle_exit(signal.SIGINT if self.should_exit else sig, frame)

        async def shutdown(self, sockets=None):
            await super().shutdown(sockets)
            # a second signal ends the server with requests in flight, their uploads on disk;
            # uvicorn then raises the signals again, which end the process
            app.state.upload_folder.remove()

    # the server's own lines (uvicorn's log, warnings) through a copy of stderr: the audio reader
    # points fd 2 at /dev/null while it decodes (audio_files.py), for every thread, and a request's
    # long read would hide what the others' threads say
    saved_stderr, sys.stderr = sys.stderr, stderr_copy()
    server = Server(uvicorn.Config(app, host=args.host, port=args.port))
    saved = warnings.showwarning
    warnings.showwarning = _warning_lines(app.state.uploads)
    try:
        server.run()
    finally:
        warnings.showwarning = saved
        if sys.stderr is not saved_stderr:
            sys.stderr.flush()
            sys.stderr = saved_stderr
    return 0 if server.started else 1


def stderr_copy():
    """A line-buffered text stream on a duplicate of fd 2 (sys.stderr where there is none)."""
    try:
        encoding = sys.stderr.encoding
        return os.fdopen(os.dup(2), "w", buffering=1, encoding=encoding, errors="backslashreplace")
    except (OSError, AttributeError, ValueError):
        return sys.stderr


def _warning_lines(uploads: Dict[str, str]):
    """warnings.showwarning for the server: each warning (an upload decoded around damage, an
    option the model cannot use) one line on stderr, as the whisperms command prints them, with an
    upload's temporary path put back to the name it was uploaded under."""

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        for path, name in list(uploads.items()):
            text = text.replace(path, name)
        tag = "" if issubclass(category, WhispermsWarning) else f" ({category.__name__})"
        print(f"whisperms-server: warning: {text}{tag}", file=sys.stderr, flush=True)

    return show


def _check_address(host: str, port: int):
    """An OptionsError unless the server can listen there, asked before the model loads: uvicorn
    found out after it, in six lines of its log."""
    if port == 0:
        return
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        reason = str(error.strerror or error).split(" (while attempting")[0]
        raise OptionsError(f"cannot listen on {host}:{port}: {reason}") from None
