"""The OpenAI-compatible server (whisperms/server.py), run for real on 127.0.0.1 with uvicorn and
called with OpenAI's own client, tiny.en: concurrent requests share one batch and each gets what it
gets alone; response formats; clear errors for bad requests; a request's own prompt."""

import contextlib
import re
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from whisperms.batched import BatchedTranscriber

from conftest import DATA

openai = pytest.importorskip(
    "openai", reason="test dependency openai missing: pip install -e .[test]"
)
uvicorn = pytest.importorskip("uvicorn", reason="server extra missing: pip install -e .[test]")

# English dev clips under 30 s of speech: one window each
CLIPS = (
    "cmuarctic_aew_arctic_a0001.wav",
    "cmuarctic_aew_arctic_a0002.wav",
    "cmuarctic_aew_arctic_a0003.wav",
    "cmuarctic_unknown-speaker_arctic_a0010.wav",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """A whisperms server on 127.0.0.1 in a thread; `hold`: its worker waits for `release()`."""

    def __init__(self, model, hold=False, batch_size=8, **app_options):
        from whisperms.server import BatchingWorker, create_app

        self.worker = BatchingWorker(model, batch_size=batch_size, start=not hold)
        self.app = create_app(model, worker=self.worker, **app_options)
        self.port = _free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        self.client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{self.port}/v1", api_key="none", max_retries=0, timeout=600
        )

    def release(self):
        self.worker.start()

    def close(self):
        self.server.should_exit = True
        self.thread.join(30)
        self.worker.stop()


@pytest.fixture(scope="module")
def server(tiny_en_model):
    s = _Server(tiny_en_model)
    yield s
    s.close()


def _health(server):
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_health_says_whether_requests_are_decoded(tiny_en_model):
    """GET /health, as a load balancer or a Kubernetes probe asks it: 200 while the worker decodes
    requests (with the model and the requests queued), 503 in OpenAI's error object before it
    starts and once it has stopped."""
    server = _Server(tiny_en_model, hold=True)
    try:
        status, body = _health(server)
        assert (status, body["error"]["type"]) == (503, "server_error")
        assert body["error"]["message"] == "the decoding thread is not running"
        server.release()
        assert _health(server) == (200, {"status": "ok", "model": "tiny.en", "queued": 0})
        assert _transcribe(server.client, CLIPS[0]).text
        server.worker.stop()
        assert _health(server)[0] == 503
    finally:
        server.close()


def _transcribe(client, name, model="whisper-1", **kwargs):
    with open(DATA / name, "rb") as f:
        return client.audio.transcriptions.create(model=model, file=(name, f), **kwargs)


def test_concurrent_requests_share_one_batch_and_each_gets_its_own_text(tiny_en_model):
    """Four requests sent at once (held until all four are queued) are decoded as one batch of
    four windows, and each text is what the batched mode gives that file alone."""
    server = _Server(tiny_en_model, hold=True)
    try:
        texts = _four_at_once(server)
    finally:
        server.close()
    alone = BatchedTranscriber(tiny_en_model)
    expected = [alone.run(str(DATA / name)).text.strip() for name in CLIPS]
    assert texts == expected
    assert all(texts)
    (group,) = server.worker._groups.values()
    assert group.transcriber.largest_batch == len(CLIPS)
    assert group.transcriber.batches == 1


def _four_at_once(server):
    with ThreadPoolExecutor(len(CLIPS)) as pool:
        futures = [pool.submit(_transcribe, server.client, name) for name in CLIPS]
        deadline = time.monotonic() + 60
        while server.worker.queued() < len(CLIPS):
            assert time.monotonic() < deadline, "the requests did not reach the worker"
            time.sleep(0.05)
        server.release()
        return [f.result().text for f in futures]


def test_response_formats(server, tiny_en_model):
    name = CLIPS[0]
    result = BatchedTranscriber(tiny_en_model, word_timestamps=True).run(str(DATA / name))
    text = result.text.strip()
    assert _transcribe(server.client, name, response_format="text") == text + "\n"
    srt = _transcribe(server.client, name, response_format="srt")
    assert srt.startswith("1\n00:00:") and " --> " in srt and text in srt.replace("\n", " ")
    vtt = _transcribe(server.client, name, response_format="vtt")
    assert vtt.startswith("WEBVTT") and " --> " in vtt
    # as OpenAI's API: segments unless words alone are asked for, words only if asked for
    both, words_only, plain = (
        _transcribe(
            server.client, name, response_format="verbose_json", timestamp_granularities=asked
        )
        for asked in (["word", "segment"], ["word"], [])
    )
    expected_segments = [(s.start, s.end, s.text) for s in result.segments]
    # as OpenAI's API gives words: no leading space, no punctuation around them
    expected_words = [
        (w["word"].strip(" ,.!?"), w["start"], w["end"]) for s in result.segments for w in s.words
    ]
    assert len(expected_words) >= 5 and any(w["word"][-1] in ",." for w in result.segments[0].words)
    # OpenAI's usage of a model billed by audio duration
    json_answer = _transcribe(server.client, name, response_format="json")
    assert json_answer.text == text
    for answer in (json_answer, both, words_only, plain):
        assert answer.usage.type == "duration"
        assert answer.usage.seconds == pytest.approx(result.info.duration)
    for verbose in (both, words_only, plain):
        assert verbose.language == "english" and verbose.text == text  # stripped, as json's
        assert verbose.duration == pytest.approx(result.info.duration)
    assert [(s.start, s.end, s.text) for s in both.segments] == expected_segments
    # without word timestamps a segment keeps its timestamp tokens' times
    assert [s.text for s in plain.segments] == [s.text for s in result.segments]
    for verbose in (both, words_only):
        assert [(w.word, w.start, w.end) for w in verbose.words] == expected_words
    assert words_only.segments is None and plain.words is None


def test_browser_and_phone_recordings_are_transcribed(server, tmp_path, ffmpeg_folder, no_ffmpeg):
    """A browser's MediaRecorder gives WebM/Opus and a phone M4A/AAC: with no ffmpeg installed these
    were refused as "files need ffmpeg"; PyAV decodes them in the server's process now."""
    for name, codec in (("recording.webm", "libopus"), ("voice-memo.m4a", "aac")):
        path = tmp_path / name
        encode = [str(ffmpeg_folder / "ffmpeg"), "-nostdin", "-loglevel", "error", "-i"]
        subprocess.run(
            [*encode, str(DATA / "jfk_inaugural_1961.flac"), "-c:a", codec, str(path)], check=True
        )
        with open(path, "rb") as f:
            text = server.client.audio.transcriptions.create(model="whisper-1", file=(name, f)).text
        # every word; a lossy copy may lose the last full stop
        assert text.rstrip(".") == (
            "And so my fellow Americans ask not what your country can do for you "
            "ask what you can do for your country"
        ), name


def test_a_request_prompt_is_its_own(server, tiny_en_model):
    """A prompt given with one request decodes that request as initial_prompt would."""
    name, prompt = CLIPS[1], "Whittemore apologized to Tom."
    expected = BatchedTranscriber(tiny_en_model, initial_prompt=prompt).run(str(DATA / name))
    assert _transcribe(server.client, name, prompt=prompt).text == expected.text.strip()


def test_models_lists_the_served_model(server, tiny_en_model):
    models = list(server.client.models.list())
    assert [m.id for m in models] == [tiny_en_model.name]
    # OpenAI's Model object has all four fields (created: a Unix time, here the server's start)
    assert models[0].object == "model" and 0 < models[0].created <= time.time()


def test_bad_requests_get_openai_errors(server, tmp_path):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    with open(not_audio, "rb") as f:
        with pytest.raises(openai.BadRequestError) as error:
            server.client.audio.transcriptions.create(model="whisper-1", file=("notes.wav", f))
    assert error.value.status_code == 400
    assert "notes.wav" in error.value.message and "tmp" not in error.value.message
    with pytest.raises(openai.NotFoundError, match="is not served here"):
        _transcribe(server.client, CLIPS[0], model="whisper-large")
    with pytest.raises(openai.BadRequestError, match="response_format must be one of"):
        _transcribe(server.client, CLIPS[0], response_format="xml")
    with pytest.raises(openai.BadRequestError, match="klingon") as error:
        _transcribe(server.client, CLIPS[0], language="klingon")
    assert error.value.body["param"] == "language"
    # an English-only model transcribes another language as English (openai's CLI and
    # faster-whisper: a warning, here in the server's log)
    german = _transcribe(server.client, CLIPS[0], language="de")
    assert german.text == _transcribe(server.client, CLIPS[0], language="en").text
    with pytest.raises(openai.BadRequestError, match="temperature must be between 0 and 1"):
        _transcribe(server.client, CLIPS[0], temperature=1.5)
    with pytest.raises(openai.BadRequestError, match="verbose_json"):
        _transcribe(server.client, CLIPS[0], timestamp_granularities=["word"])
    # a form without its file, or with a field that is no number: OpenAI's error object too
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    url = f"http://127.0.0.1:{server.port}/v1/audio/transcriptions"
    form = urllib.parse.urlencode({"model": "whisper-1"}).encode()
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(urllib.request.Request(url, data=form), timeout=60)
    assert answer.value.code == 400
    body = json.loads(answer.value.read())["error"]
    assert body["param"] == "file" and body["message"].startswith("file: ")
    with pytest.raises(openai.BadRequestError) as error:
        _transcribe(server.client, CLIPS[0], temperature="warm")
    assert error.value.body["param"] == "temperature"
    # as OpenAI: a model is required, and whisper-1 does not stream (the client waits for events)
    with pytest.raises(openai.BadRequestError) as error:
        with open(DATA / CLIPS[0], "rb") as f:
            server.client.audio.transcriptions.create(model="whisper-1", file=f, stream=True)
    assert error.value.body == {
        "message": "stream: streaming is not supported; leave stream out",
        "type": "invalid_request_error",
        "param": "stream",
        "code": None,
    }

    def multipart(**fields):  # (body, content type): text fields, and `file` a file if bytes
        parts = []
        for key, value in fields.items():
            named = f'; filename="{key}.wav"' if isinstance(value, bytes) else ""
            head = f'--b\r\nContent-Disposition: form-data; name="{key}"{named}\r\n\r\n'
            parts.append(head.encode() + (value if named else value.encode()) + b"\r\n")
        return b"".join(parts) + b"--b--\r\n", "multipart/form-data; boundary=b"

    for fields, param, message in (
        (dict(file=(DATA / CLIPS[0]).read_bytes()), "model", "you must provide a model parameter"),
        (
            dict(file=(DATA / CLIPS[0]).read_bytes(), model=" "),
            "model",
            "you must provide a model parameter",
        ),
        (
            dict(file="hello", model="whisper-1"),
            "file",
            "file: must be an uploaded file, not a text field",
        ),
    ):
        body, kind = multipart(**fields)
        request = urllib.request.Request(url, data=body, headers={"Content-Type": kind})
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=60)
        assert answer.value.code == 400
        error = json.loads(answer.value.read())["error"]
        assert (error["param"], error["message"]) == (param, message)
    # the server still answers
    assert _transcribe(server.client, CLIPS[2]).text


def test_translation_on_an_english_model_is_its_transcription(server):
    """As openai's: an English-only model has no task token, so translating is transcribing; and
    as OpenAI's answers, a translation has no usage."""
    with open(DATA / CLIPS[3], "rb") as f:
        translated = server.client.audio.translations.create(model="whisper-1", file=(CLIPS[3], f))
    transcribed = _transcribe(server.client, CLIPS[3])
    assert translated.text == transcribed.text
    assert transcribed.usage.seconds > 0 and getattr(translated, "usage", None) is None


def test_the_command_fails_in_one_line(tmp_path):
    """whisperms-server with a model that is not there: one line naming it, exit 1."""
    import subprocess
    import sys

    missing = tmp_path / "no-such-model"
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from whisperms.server import main; sys.exit(main())",
            "--model",
            str(missing),
            "--port",
            str(_free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("whisperms-server: error:"), run.stderr
    assert "no-such-model" in lines[0]


def test_a_request_given_up_does_not_fail_the_others(tiny_en_model):
    """A request whose waiter is gone (cancelled before its batch) is skipped; the request decoded
    with it still gets its result."""
    from whisperms.batched import BatchInput
    from whisperms.server import BatchingWorker

    worker = BatchingWorker(tiny_en_model, start=False)
    gone = worker.submit(BatchInput(str(DATA / CLIPS[0])))
    kept = worker.submit(BatchInput(str(DATA / CLIPS[1])))
    assert gone.cancel()
    worker.start()
    try:
        result = kept.result(timeout=600)
    finally:
        worker.stop()
    assert result.text == BatchedTranscriber(tiny_en_model).run(str(DATA / CLIPS[1])).text


def test_a_file_over_the_limit_is_refused(tiny_en_model):
    """413 with the sizes named, before anything is decoded; a file under the limit is served."""
    size = (DATA / CLIPS[0]).stat().st_size
    server = _Server(tiny_en_model, max_upload_mb=size / 2**20 - 0.001)
    try:
        with pytest.raises(openai.APIStatusError) as error:
            _transcribe(server.client, CLIPS[0])
        assert error.value.status_code == 413
        assert "this server takes files of up to" in error.value.message
        assert server.worker.queued() == 0
        smaller = min(CLIPS, key=lambda name: (DATA / name).stat().st_size)
        assert (DATA / smaller).stat().st_size < size
        assert _transcribe(server.client, smaller).text
    finally:
        server.close()


def test_a_body_over_the_limit_is_refused_before_it_is_read(tiny_en_model):
    """A body declared far over the limit (Content-Length) is refused at once, without reading
    it (it had been spooled whole to disk, then refused), and so is a streamed one without a
    Content-Length once it passes the limit: 413, OpenAI's error object naming the size."""
    import http.client
    import json

    server = _Server(tiny_en_model, max_upload_mb=1)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        connection.putrequest("POST", "/v1/audio/transcriptions")
        connection.putheader("Content-Type", "multipart/form-data; boundary=x")
        connection.putheader("Content-Length", str(10**9))
        connection.endheaders()  # and no byte of the gigabyte
        answer = connection.getresponse()
        assert answer.status == 413
        error = json.loads(answer.read())["error"]
        assert error["param"] == "file" and error["message"] == (
            "the request body is 953.7 MB; this server takes files of up to 1 MB"
        )
        connection.close()

        def chunks():  # chunked: no Content-Length
            yield b"--x\r\nContent-Disposition: form-data; name=file; filename=a.wav\r\n\r\n"
            for _ in range(3):
                yield bytes(2**20)

        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        headers = {"Content-Type": "multipart/form-data; boundary=x"}
        connection.request(
            "POST", "/v1/audio/transcriptions", chunks(), headers, encode_chunked=True
        )
        answer = connection.getresponse()
        assert answer.status == 413
        assert re.fullmatch(  # what had come when it passed the limit: the body is over that
            r"the request body is over \d+\.\d MB; this server takes files of up to 1 MB",
            json.loads(answer.read())["error"]["message"],
        )
        assert server.worker.queued() == 0
    finally:
        server.close()


def test_a_stalled_upload_is_answered_408(tiny_en_model):
    """A client that stops sending its upload part way (a dead link, or a slow-loris) held its
    connection and its partial upload for ever: after upload_stall_seconds with nothing more, it
    is answered 408 in OpenAI's error object and the server goes on answering others."""
    import json
    import socket as sockets

    from whisperms import OptionsError
    from whisperms.server import create_app

    for wrong in (0, -1.0, float("nan")):
        with pytest.raises(OptionsError, match="^upload_stall_seconds must be a finite number > 0"):
            create_app(tiny_en_model, upload_stall_seconds=wrong)
    server = _Server(tiny_en_model, upload_stall_seconds=1.0)
    try:
        connection = sockets.create_connection(("127.0.0.1", server.port), timeout=30)
        head = (
            "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
        )
        connection.sendall(head.encode())  # and nothing more
        start = time.monotonic()
        answer = b""
        while b"}}" not in answer:
            chunk = connection.recv(65536)
            assert chunk, answer
            answer += chunk
        waited = time.monotonic() - start
        connection.close()
        status, _, body = answer.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 408") and 0.9 < waited < 20, (status, waited)
        assert json.loads(body)["error"]["message"] == (
            "the upload stalled: nothing more came for 1 s"
        )
        assert _transcribe(server.client, CLIPS[0]).text
    finally:
        server.close()


def test_a_request_whose_client_has_gone_is_not_decoded(tiny_en_model):
    """A client that sends its file and hangs up before the answer: the request is given up
    within a second (it no longer counts as queued for --max_concurrent_requests), and none of its
    audio is decoded (its windows were, keeping later requests waiting and 429s going); a request
    after it gets its text."""
    import http.client

    from whisperms.server_worker import DEFAULT_REQUEST

    server = _Server(tiny_en_model, hold=True)
    try:
        long_clip = DATA / "librivox_shakespeare-sonnet-002.mp3"  # 50 s: two windows
        boundary = "x"
        body = (
            (
                f"--{boundary}\r\nContent-Disposition: form-data; name=model\r\n\r\nwhisper-1\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=file; filename=s.mp3\r\n"
                "Content-Type: audio/mpeg\r\n\r\n"
            ).encode()
            + long_clip.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        gone = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        gone.request("POST", "/v1/audio/transcriptions", body, headers)
        deadline = time.monotonic() + 30
        while server.worker.queued() == 0:
            assert time.monotonic() < deadline, "the request did not reach the worker"
            time.sleep(0.05)
        gone.close()  # hangs up without reading the answer
        deadline = time.monotonic() + 10
        while server.worker.queued():
            assert time.monotonic() < deadline, "the request was not given up"
            time.sleep(0.05)
        server.release()
        text = _transcribe(server.client, CLIPS[1]).text
        assert text == BatchedTranscriber(tiny_en_model).run(str(DATA / CLIPS[1])).text.strip()
        assert server.worker._group(DEFAULT_REQUEST).transcriber.windows == 1  # CLIPS[1]'s only
    finally:
        server.close()


def test_a_prompt_over_the_limit_is_refused(server):
    """Whisper reads a prompt's last 223 tokens; a prompt of over MAX_PROMPT_CHARS characters is a
    400 naming the field (a megabyte of prompt held up every request while it was tokenized)."""
    from whisperms.server import MAX_PROMPT_CHARS

    with pytest.raises(openai.BadRequestError, match="this server takes up to") as error:
        _transcribe(server.client, CLIPS[1], prompt="a " * MAX_PROMPT_CHARS)
    assert error.value.body["param"] == "prompt"


def test_requests_over_the_limit_are_told_to_retry(tiny_en_model):
    """With max_concurrent_requests=1 and one request in flight (held), the next is refused with
    OpenAI's rate-limit error (429, Retry-After) and never reaches the worker; once the first is
    answered (its own text), requests are served again."""
    server = _Server(tiny_en_model, hold=True, max_concurrent_requests=1)
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(_transcribe, server.client, CLIPS[0])
            deadline = time.monotonic() + 60
            while server.worker.queued() < 1:
                assert time.monotonic() < deadline, "the first request did not reach the worker"
                time.sleep(0.05)
            with pytest.raises(openai.RateLimitError) as error:
                # refused at once; were it queued, the held worker would keep it waiting
                _transcribe(server.client.with_options(timeout=60), CLIPS[1])
            assert error.value.status_code == 429
            assert error.value.response.headers["retry-after"] == "1"
            assert error.value.code == "rate_limit_exceeded"
            assert "1 request at a time (--max_concurrent_requests)" in error.value.message
            assert server.worker.queued() == 1
            server.release()
            text = first.result(timeout=600).text
        alone = BatchedTranscriber(tiny_en_model).run(str(DATA / CLIPS[0])).text.strip()
        assert text == alone and text
        assert _transcribe(server.client, CLIPS[1]).text
    finally:
        server.close()


def test_a_limit_that_is_not_a_positive_integer_is_refused(tiny_en_model, capsys):
    """create_app refuses it; the command names it in one line and exits 1 before loading a
    model (the model named here does not exist)."""
    from whisperms.errors import OptionsError
    from whisperms.server import create_app, main

    refused = "max_concurrent_requests must be an integer >= 1 or None"
    for bad in (0, -3, 1.5, True):
        with pytest.raises(OptionsError, match=refused):
            create_app(tiny_en_model, max_concurrent_requests=bad)
    code = main(["--model", "no-such-model", "--max_concurrent_requests", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [
        "whisperms-server: error: max_concurrent_requests must be an integer >= 1 or None, got 0"
    ]


def test_odd_names_paths_and_methods_get_openai_errors(server, tiny_en_model):
    """An upload's name never reaches the OS as given (a 300-character extension is served like any
    file); the framework's refusals (unknown path, wrong method) are OpenAI error objects; a model
    is looked up by id as OpenAI's client does (`models.retrieve`)."""
    import json
    import urllib.error
    import urllib.request

    with open(DATA / CLIPS[1], "rb") as f:
        long_name = "clip." + "a" * 300
        odd = server.client.audio.transcriptions.create(model="whisper-1", file=(long_name, f))
    assert odd.text == _transcribe(server.client, CLIPS[1]).text
    base = f"http://127.0.0.1:{server.port}/v1"
    for url, status in ((f"{base}/audio/transcriptions", 405), (f"{base}/nothing", 404)):
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(url, timeout=60)
        assert answer.value.code == status
        error = json.loads(answer.value.read())["error"]
        assert error["type"] == "invalid_request_error" and error["message"], error
    assert server.client.models.retrieve(tiny_en_model.name).id == tiny_en_model.name
    assert server.client.models.retrieve("whisper-1").id == "whisper-1"  # the id asked for
    with pytest.raises(openai.NotFoundError, match="is not served here"):
        server.client.models.retrieve("whisper-large")


def test_a_busy_group_gives_the_others_a_turn():
    """A group's turn hands out the requests queued when it began (at least a batch), then stops
    taking while another group has requests waiting, and goes on taking when none does."""
    from whisperms.batched import InputQueue
    from whisperms.server_worker import _Turn

    queue, others = InputQueue(), [True]
    for name in "abcde":
        queue.put(name)
    turn = _Turn(queue, 2, lambda: others[0])
    assert [turn.take(), turn.take(), turn.take()] == [(0, "a"), (1, "b"), None]
    others[0] = False
    assert [turn.take(), turn.take(), turn.take(), turn.take()] == [
        (2, "c"),
        (3, "d"),
        (4, "e"),
        None,
    ]


def test_upload_limits_and_ports_out_of_range_are_refused(tiny_en_model, capsys):
    from whisperms.errors import OptionsError
    from whisperms.server import create_app, main

    # 1e303 MB made the body limit infinite: an OverflowError traceback once the model had loaded
    for bad in (0, -1, float("nan"), float("inf"), 1e303):
        with pytest.raises(OptionsError, match="max_upload_mb must be"):
            create_app(tiny_en_model, max_upload_mb=bad)
    for argv, message in (
        (["--max_upload_mb", "nan"], "max_upload_mb must be"),
        (["--max_upload_mb", "1e303"], "max_upload_mb must be a finite number above 0 up to"),
        (["--port", "70000"], "--port must be from 0 to 65535, got 70000"),
    ):
        assert main(["--model", "no-such-model", *argv]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert (
            len(err) == 1 and err[0].startswith("whisperms-server: error: ") and message in err[0]
        )


def test_the_address_is_checked_before_the_model_loads(capsys):
    """A port in use was found by uvicorn after the model had loaded: six lines of its log."""
    from whisperms.server import main

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["--model", "no-such-model", "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    message = f"cannot listen on 127.0.0.1:{port}: Address already in use"
    assert err == [f"whisperms-server: error: {message}"]


def _server_after_a_request(model_dir, sigint_line, env=None):
    """A whisperms-server process whose script starts with `sigint_line` (how SIGINT is set, as a
    shell would leave it), once it has answered one request: (process, port)."""
    import subprocess
    import sys

    from user_env import user_env

    port = _free_port()
    script = "\n".join(
        ["import signal, sys", sigint_line, "from whisperms.server import main", "sys.exit(main())"]
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, "--model", str(model_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=user_env(env),
    )
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=300
    )
    deadline = time.monotonic() + 300
    while True:
        try:
            with open(DATA / CLIPS[0], "rb") as f:
                client.audio.transcriptions.create(model="whisper-1", file=f)
            return process, port
        except openai.APIConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("no server")
            time.sleep(0.5)


def test_a_second_ctrl_c_ends_the_server_at_once(tiny_en_ct2_dir):
    """Once a request has been decoded, MindSpore's SIGINT handler (set by every graph run) makes
    Ctrl-C a SIGTERM, so uvicorn's "a second Ctrl-C forces the exit" no longer held: with a client
    stalled in mid-upload the server waited for it. Now the second signal ends it."""
    import signal

    # as from a terminal
    terminal = "signal.signal(signal.SIGINT, signal.default_int_handler)"
    process, port = _server_after_a_request(tiny_en_ct2_dir, terminal)
    try:
        stalled = socket.create_connection(("127.0.0.1", port))
        stalled.sendall(
            b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
        )
        time.sleep(1)
        process.send_signal(signal.SIGINT)
        time.sleep(2)
        assert process.poll() is None  # the first waits for the stalled upload
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
        stalled.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_forced_exit_leaves_no_upload_behind(tiny_en_ct2_dir, tmp_path):
    """Two SIGTERMs while a request is decoding end the server at once (uvicorn's forced exit):
    the upload's copy on disk stayed behind, 54 MB of it for a long recording."""
    import signal

    import numpy as np
    import soundfile

    uploads = tmp_path / "tmp"
    uploads.mkdir()
    terminal = "signal.signal(signal.SIGINT, signal.default_int_handler)"
    process, port = _server_after_a_request(tiny_en_ct2_dir, terminal, {"TMPDIR": str(uploads)})
    speech, rate = soundfile.read(DATA / CLIPS[0])
    long = tmp_path / "long.wav"
    soundfile.write(long, np.tile(speech, 240 * rate // len(speech)), rate)  # about 4 minutes
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=300
    )

    def request():
        with open(long, "rb") as f, contextlib.suppress(openai.APIError):
            client.audio.transcriptions.create(model="whisper-1", file=f)

    asking = threading.Thread(target=request)
    asking.start()
    try:
        deadline = time.monotonic() + 120
        while not list(uploads.rglob("*.wav")):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
        time.sleep(1)  # decoding
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        assert list(uploads.iterdir()) == []  # the server's upload folder too
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        asking.join(timeout=60)


def test_a_warning_is_one_line_naming_the_upload(tiny_en_ct2_dir, tmp_path):
    """A FLAC damaged half way is decoded around the damage with a warning: it reached the log as
    Python's two lines, naming the upload's temporary copy. A body not in the multipart boundary
    it declares is a 400, without the parser's bare line in the log."""
    import signal
    import urllib.error
    import urllib.request

    data = bytearray((DATA / "jfk_inaugural_1961.flac").read_bytes())
    data[len(data) // 2 : len(data) // 2 + 5000] = bytes(range(250)) * 20
    damaged = tmp_path / "damaged.flac"
    damaged.write_bytes(bytes(data))
    terminal = "signal.signal(signal.SIGINT, signal.default_int_handler)"
    process, port = _server_after_a_request(tiny_en_ct2_dir, terminal)
    try:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=300
        )
        with open(damaged, "rb") as f:
            text = client.audio.transcriptions.create(model="whisper-1", file=f).text
        assert "your country" in text
        bad = b"--x\r\nContent-Disposition: form-data; name=model\r\n\r\nwhisper-1\r\n--x--\r\n"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/audio/transcriptions",
            data=bad,
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=60)
        assert answer.value.code == 400
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log = process.stderr.read().splitlines()
        assert not [line for line in log if "boundary" in line], log
        warned = [line for line in log if "warning" in line]
        assert len(warned) == 1, warned
        assert warned[0].startswith("whisperms-server: warning: damaged.flac: ")
        assert warned[0].endswith(
            "could not be decoded (the file is damaged); transcribing them as silence"
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_ctrl_c_reaches_a_server_started_with_it_ignored(tiny_en_ct2_dir):
    """A server started in the background (SIGINT ignored until uvicorn sets its handler, after the
    batching worker began its first call): after a request, SIGINT still ends it. Putting back the
    handler recorded when that call began would have put back "ignored"."""
    import signal

    ignored = "signal.signal(signal.SIGINT, signal.SIG_IGN)"  # as nohup, or a background job
    process, _ = _server_after_a_request(tiny_en_ct2_dir, ignored)
    try:
        time.sleep(1)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_ctrl_c_ends_the_server_with_one_line(tiny_en_ct2_dir):
    """Ctrl-C before uvicorn runs (MindSpore importing, the model loading) ends the server with one
    line and status 130, as the whisperms command; it was a traceback ("ImportError:
    initialization failed") or a fatal error in the interpreter's shutdown. Ctrl-C once it runs
    ends it after uvicorn's log of its shutdown, with that line too: uvicorn raises the signal
    again when it is done, which was a KeyboardInterrupt's traceback."""
    import signal
    import subprocess
    import sys

    from user_env import default_sigint, user_env

    started = "import sys; from whisperms.server import main; print(flush=True); sys.exit(main())"
    # Python's imports take 0.1-0.4 s before main(), MindSpore's about 1.5 s, then the model loads;
    # on a fast machine uvicorn may be running by 1.5 s, and its log comes first (below)
    for delay in (0.3, 0.8, 1.5):
        process = subprocess.Popen(
            [sys.executable, "-c", started, "--model", tiny_en_ct2_dir, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=user_env(),
            preexec_fn=default_sigint,
        )
        try:
            assert process.stdout.readline() == "\n"
            time.sleep(delay)
            process.send_signal(signal.SIGINT)
            status = process.wait(timeout=120)
            *log, last = process.stderr.read().splitlines()
            assert (status, last) == (130, "whisperms-server: interrupted"), (delay, log)
            assert all(line.startswith("INFO:") for line in log), (delay, log)
            assert not log or "INFO:     Finished server process" in log[-1], (delay, log)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", started, "--model", tiny_en_ct2_dir, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=user_env(),
        preexec_fn=default_sigint,
    )
    try:
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=60)
        log = process.stderr.read().splitlines()
        assert (status, log[-1]) == (130, "whisperms-server: interrupted"), log
        assert not [line for line in log if "Traceback" in line or "Error" in line], log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_beam_size_is_none_or_a_number_the_batched_mode_takes(tiny_en_ct2_dir, capsys):
    """`--beam_size None` (the default, greedy) is accepted as the CLI's is; a value reaches the
    batched mode, which refuses 0 in one line; a word is a usage error."""
    from whisperms.server import main

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        # parsed, then stopped at the port check
        assert main(["--model", "no-such-model", "--beam_size", "None", "--port", str(port)]) == 1
    assert "cannot listen on" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        main(["--beam_size", "five"])
    assert stopped.value.code == 2
    # one line, as the whisperms CLI's (argparse printed its usage first)
    assert capsys.readouterr().err.splitlines() == [
        "whisperms-server: error: argument --beam_size: invalid int value: 'five' (see "
        "whisperms-server --help)"
    ]
    argv = ["--model", str(tiny_en_ct2_dir), "--beam_size", "0", "--port", str(_free_port())]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("whisperms-server: error: ")
    assert "beam_size" in err[0]


_HOLD_A_FOLDER = """
import sys, time
from whisperms.upload_folder import UploadFolder
folder = UploadFolder(sys.argv[1])
open(folder.path + "/upload.wav", "wb").write(bytes(1000))
print(folder.path, flush=True)
time.sleep(600)
"""


def test_the_uploads_of_a_killed_server_are_removed_by_the_next_one(tmp_path):
    """A server ended by SIGKILL cannot remove the uploads it holds; the next server started
    removes them, and not the folders of servers still running (two real processes: one killed,
    one running)."""
    import subprocess
    import sys

    from user_env import user_env

    from whisperms.upload_folder import UploadFolder

    def server_process():
        process = subprocess.Popen(
            [sys.executable, "-c", _HOLD_A_FOLDER, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            env=user_env(),
        )
        return process, process.stdout.readline().strip()

    killed, killed_folder = server_process()
    running, running_folder = server_process()
    try:
        killed.kill()
        killed.wait()
        (tmp_path / "whisperms-server-not-ours").mkdir()  # no lock file: not judged
        assert len(list(tmp_path.iterdir())) == 3
        folder = UploadFolder(str(tmp_path))
        left = {p.name for p in tmp_path.iterdir()}
        assert left == {
            "whisperms-server-not-ours",
            running_folder.rsplit("/", 1)[1],
            folder.path.rsplit("/", 1)[1],
        }
        assert killed_folder.rsplit("/", 1)[1] not in left
        assert (tmp_path / running_folder / "upload.wav").exists()
        folder.remove()
        assert not (tmp_path / folder.path).exists()
    finally:
        running.kill()
        running.wait()
        killed.stdout.close()
        running.stdout.close()


def test_a_long_request_does_not_hold_up_another_kind(tiny_en_model):
    """A request of another group (word timestamps) sent behind a long plain one is decoded at the
    plain group's next batch: groups take turns a batch at a time while both have requests. The
    plain group's turn lasted until every input it had taken was done (an hour of audio held the
    others for the hour)."""
    from whisperms.batched import BatchInput
    from whisperms.server import BatchingWorker

    worker = BatchingWorker(tiny_en_model, batch_size=1, start=False)
    done = []
    long_clip = str(DATA / "librivox_shakespeare-sonnet-002.mp3")  # 50 s: two pieces
    long = worker.submit(BatchInput(long_clip))
    short = worker.submit(BatchInput(str(DATA / CLIPS[1])), word_timestamps=True)
    long.add_done_callback(lambda f: done.append("long"))
    short.add_done_callback(lambda f: done.append("short"))
    worker.start()
    try:
        long_text, short_result = long.result(timeout=600).text, short.result(timeout=600)
    finally:
        worker.stop()
    assert done == ["short", "long"]
    assert long_text == BatchedTranscriber(tiny_en_model).run(long_clip).text
    alone = BatchedTranscriber(tiny_en_model, word_timestamps=True).run(str(DATA / CLIPS[1]))
    assert [w["word"] for s in short_result.segments for w in s.words] == [
        w["word"] for s in alone.segments for w in s.words
    ]
    # a group made for a request's own options is dropped once it has none left
    assert list(worker._groups) == [worker._default]


def test_a_failure_in_a_batch_fails_its_requests_only_as_openai_errors(tiny_en_model):
    """An exception from inside the batched mode (a bug; here one injected into the first batch)
    fails the requests that batch's turn took, with OpenAI's error object (500, server_error): it
    failed every request of the group, queued ones too, as the framework's bare text. A request
    queued behind it is decoded at the next turn. OpenAI's client, which retries a 500 twice, is
    told not to (x-should-retry: false): the same request fails the same way, after its decode."""
    from whisperms.server_worker import DEFAULT_REQUEST

    server = _Server(tiny_en_model, hold=True, batch_size=1)  # the turn takes one request
    group = server.worker._group(DEFAULT_REQUEST)
    advance, calls = group.transcriber._advance, []

    def fails_first(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("injected")
        return advance(batch)

    group.transcriber._advance = fails_first
    try:
        with ThreadPoolExecutor(2) as pool:
            retrying = server.client.with_options(max_retries=2)  # the client's default
            first = pool.submit(_transcribe, retrying, CLIPS[0])
            deadline = time.monotonic() + 30
            while server.worker.queued() < 1:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            second = pool.submit(_transcribe, server.client, CLIPS[1])
            while server.worker.queued() < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            server.release()
            with pytest.raises(openai.InternalServerError) as error:
                first.result(timeout=600)
            text = second.result(timeout=600).text
    finally:
        server.close()
    assert error.value.response.headers["x-should-retry"] == "false"
    assert len(calls) == 2  # the first request once (a retry would have been decoded), the second
    body = error.value.body
    assert body == {
        "message": "the server failed: RuntimeError: injected",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert text == BatchedTranscriber(tiny_en_model).run(str(DATA / CLIPS[1])).text.strip()


def test_a_failure_reading_an_upload_is_the_servers_500_not_the_clients_400(tiny_en_model):
    """An exception no check foresaw while an upload is read and cut into pieces (a bug, or numpy
    running out of memory on a long upload; here injected into the first three uploads' reading)
    fails that request alone, with OpenAI's 500 server_error: it was a 400 invalid_request_error,
    which blames the client's file, and which OpenAI's client never retries. Memory running out
    leaves the retry to the client; a bug tells it not to. The message names the upload as the
    client did, never the server's temporary copy."""
    from whisperms.server_worker import DEFAULT_REQUEST

    server = _Server(tiny_en_model, hold=True)
    group = server.worker._group(DEFAULT_REQUEST)
    prepare = group.transcriber._prepare
    failures = [KeyError("injected"), MemoryError("Unable to allocate 5.15 GiB"), "the upload's"]

    def fails_first(index, audio):
        if failures:
            failure = failures.pop(0)
            if isinstance(failure, str):  # naming the server's temporary copy of the upload
                raise OSError(24, "Too many open files", getattr(audio, "audio", audio))
            raise failure
        return prepare(index, audio)

    group.transcriber._prepare = fails_first
    server.release()
    answers = []
    try:
        for _ in range(3):
            with pytest.raises(openai.InternalServerError) as error:
                _transcribe(server.client, CLIPS[0])
            retry = error.value.response.headers.get("x-should-retry")
            answers.append((error.value.body["type"], error.value.body["message"], retry))
        text = _transcribe(server.client, CLIPS[1]).text
    finally:
        server.close()
    assert answers == [
        ("server_error", "the server failed: KeyError: 'injected'", "false"),
        ("server_error", "the server failed: MemoryError: Unable to allocate 5.15 GiB", None),
        (
            "server_error",
            f"the server failed: OSError: [Errno 24] Too many open files: '{CLIPS[0]}'",
            "false",
        ),
    ]
    assert text == BatchedTranscriber(tiny_en_model).run(str(DATA / CLIPS[1])).text.strip()


def test_a_translation_says_its_text_is_english(base_model):
    """OpenAI's verbose_json of a translation gives the language of its text, always English; the
    server gave the language it was translated from."""
    from whisperms.server_formats import verbose_json

    result = base_model.transcribe(str(DATA / "picovoice_es_test_es.wav"), task="translate")
    assert result.language == "es"
    assert verbose_json(result, "translate", [])["language"] == "english"
    assert verbose_json(result, "transcribe", [])["language"] == "spanish"
    assert "usage" not in verbose_json(result, "translate", [])  # as OpenAI's TranslationVerbose


def test_the_server_writes_through_a_copy_of_stderr():
    """The audio reader points fd 2 at /dev/null while it decodes, for every thread: the server's
    own lines (uvicorn's log, warnings about other requests) go through a copy of stderr made at its
    start, so a long read no longer hides them; what is written to fd 2 itself (the MP3 decoder's
    notes) stays hidden."""
    import subprocess
    import sys

    script = "\n".join(
        [
            "import os, sys",
            "from whisperms.decoder_output import decoder_output_hidden",
            "from whisperms.server import stderr_copy",
            "sys.stderr = stderr_copy()",
            "with decoder_output_hidden():",
            "    print('the server says this', file=sys.stderr)",
            "    os.write(2, b'the decoder says this')",
        ]
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == "the server says this\n"
