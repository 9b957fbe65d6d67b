"""voice-serve against the official OpenAI client, on a real loopback server and tiny checkpoints.

What runs for real: uvicorn on 127.0.0.1, FastAPI, the stream engine on the tiny Qwen3-TTS models,
ffmpeg for the compressed formats, the voice registry.  The voices carry ``max_new_tokens`` in
their generation defaults so each take stays short.  Not covered: audio quality (random weights).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time

import numpy as np
import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("torch")

from audiobox.errors import UserError  # noqa: E402
from audiobox.serve.config import check_binding, read_api_key  # noqa: E402

TEXT = "A served voice speaks."
KEY = "k" * 24


def _probe(data: bytes) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", "-i", "pipe:0"],
        input=data,
        capture_output=True,
        timeout=30,
    )
    return json.loads(out.stdout)["streams"][0]


def _decode(data: bytes, fmt: str) -> np.ndarray:
    """Decode with ffmpeg at 24 kHz mono (pcm is raw 16-bit already)."""
    if fmt == "pcm":
        return np.frombuffer(data, dtype="<i2")
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "s16le", "-ar", "24000", "-ac", "1", "pipe:1"],
        input=data,
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return np.frombuffer(out.stdout, dtype="<i2")


def _start(app):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def served(tiny_models, tmp_path_factory):
    from audiobox.paths import Dirs
    from audiobox.serve.app import create_app
    from audiobox.serve.config import ServeConfig
    from audiobox.tts.runtime import RuntimeOptions
    from audiobox.voices import VoiceRegistry

    root = tmp_path_factory.mktemp("serve")
    dirs = Dirs(cache=root / "cache", work=root / "work")
    cv = str(tiny_models / "custom_voice")
    VoiceRegistry(dirs.voices).create(
        "anna",
        {
            "engine": "custom_voice",
            "custom_voice": {"speaker": "vivian", "model": cv},
            "generation_defaults": {"max_new_tokens": 10},
        },
    )
    config = ServeConfig(
        dirs=dirs,
        models={"base": str(tiny_models / "base"), "custom_voice": cv},
        runtime=RuntimeOptions(device="cpu", dtype="float32", threads=1),
        judge_asr="none",
        asr_model=str(tiny_models / "whisper"),
    )
    app = create_app(config)
    server, thread, url = _start(app)
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused-on-loopback", max_retries=0, timeout=120)
    yield {"client": client, "url": url, "app": app, "dirs": dirs}
    server.should_exit = True
    thread.join(timeout=10)
    app.state.service.close()


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_openai_client_speech_in_every_format_streamed_and_not(served, fmt):
    client = served["client"]
    whole = client.audio.speech.create(
        model="tts-1", voice="anna", input=TEXT, response_format=fmt, extra_body={"seed": 3}
    ).content
    with client.audio.speech.with_streaming_response.create(
        model="qwen3-tts", voice="anna", input=TEXT, response_format=fmt, extra_body={"seed": 3}
    ) as response:
        assert response.headers["content-type"].startswith("audio/")
        pieces = list(response.iter_bytes())
    streamed = b"".join(pieces)
    if fmt == "pcm":
        assert len(whole) == len(streamed) and len(whole) % (2 * 1920) == 0
    else:
        stream_info = _probe(whole)
        rate = int(stream_info["sample_rate"])
        assert rate == (48000 if fmt == "opus" else 24000)  # Opus always decodes at 48 kHz
    a, b = _decode(whole, fmt), _decode(streamed, fmt)
    assert 0.3 < len(a) / 24000 < 1.0 and abs(len(a) - len(b)) <= 2048  # ~9 frames of 80 ms
    if fmt in ("wav", "pcm", "flac"):
        assert np.array_equal(a, b)  # same seed, lossless: the same take


def test_sse_stream_carries_base64_deltas_and_a_done_event(served):
    import base64

    raw = (
        served["client"]
        .audio.speech.create(
            model="qwen3-tts",
            voice="anna",
            input=TEXT,
            response_format="pcm",
            stream_format="sse",
            extra_body={"seed": 3},
        )
        .content.decode()
    )
    events = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["output_tokens"] > 0
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"} and len(audio) % 2 == 0
    plain = (
        served["client"]
        .audio.speech.create(
            model="qwen3-tts", voice="anna", input=TEXT, response_format="pcm", extra_body={"seed": 3}
        )
        .content
    )
    assert audio == plain


def test_models_voices_and_select_best(served):
    client = served["client"]
    ids = [m.id for m in client.models.list().data]
    assert ids[0] == "qwen3-tts" and "tts-1" in ids
    import httpx

    voices = httpx.get(served["url"] + "/v1/audio/voices").json()["data"]
    kinds = {v["id"]: v["kind"] for v in voices}
    assert kinds["anna"] == "speaker" and kinds["vivian"] == "builtin"
    response = client.audio.speech.with_raw_response.create(
        model="qwen3-tts",
        voice="anna",
        input=TEXT,
        response_format="wav",
        extra_body={"select_best": 2, "seed": 5},
    )
    assert response.headers["x-selected-take"] in ("1", "2")
    assert response.headers["x-seed"] in ("5", "6")
    normal, fast = (
        client.audio.speech.create(
            model="qwen3-tts",
            voice="anna",
            input=TEXT,
            response_format="pcm",
            speed=speed,
            extra_body={"seed": 5},
        ).content
        for speed in (1.0, 2.0)
    )
    assert abs(len(fast) / len(normal) - 0.5) < 0.05  # speed: ffmpeg's atempo, same pitch


def test_errors_are_openai_shaped_4xx(served):
    import httpx

    client = served["client"]
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(model="qwen3-tts", voice="nobody", input=TEXT)
    assert err.value.body["code"] == "voice_not_found" and "anna" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError, match="limit is 4096"):
        client.audio.speech.create(model="qwen3-tts", voice="anna", input="x" * 5000)
    with pytest.raises(openai.BadRequestError, match="model_not_found|not served"):
        client.audio.speech.create(model="whisper-1", voice="anna", input=TEXT)
    url = served["url"]
    for body, status in (
        ({"model": "qwen3-tts", "voice": "anna", "input": TEXT, "response_format": "ogg"}, 400),
        ({"model": "qwen3-tts", "voice": "anna", "input": TEXT, "speed": 9}, 400),
        ({"model": "qwen3-tts", "voice": "anna", "input": TEXT, "surprise": 1}, 400),
        ({"model": "qwen3-tts", "voice": "anna", "input": TEXT, "select_best": 9}, 400),
        ({"model": "qwen3-tts", "voice": "anna", "input": TEXT, "language": "klingon"}, 400),
    ):
        reply = httpx.post(url + "/v1/audio/speech", json=body)
        assert reply.status_code == status, reply.text
        assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
        assert "Traceback" not in reply.text
    huge = httpx.post(
        url + "/v1/audio/speech",
        content=b"{" + b" " * (2 << 20) + b"}",
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "body_too_large"
    missing = httpx.get(url + "/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "invalid_request_error"


def test_voices_api_export_import_delete(served):
    import httpx

    url = served["url"]
    bundle = httpx.get(url + "/v1/audio/voices/anna/bundle")
    assert bundle.status_code == 200 and bundle.content[:2] == b"PK"
    imported = httpx.post(
        url + "/v1/audio/voices/import",
        files={"file": ("anna.zip", bundle.content)},
        data={"name": "anna-copy"},
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["id"] == "anna-copy"
    again = httpx.post(
        url + "/v1/audio/voices/import",
        files={"file": ("anna.zip", bundle.content)},
        data={"name": "anna-copy"},
    )
    assert again.status_code == 400 and "already exists" in again.json()["error"]["message"]
    broken = httpx.post(url + "/v1/audio/voices/import", files={"file": ("x.zip", b"not a zip")})
    assert broken.status_code == 400
    assert httpx.delete(url + "/v1/audio/voices/anna-copy").json()["deleted"] is True
    assert httpx.get(url + "/v1/audio/voices/anna-copy").status_code == 404
    assert httpx.delete(url + "/v1/audio/voices/vivian").status_code == 404  # built-ins stay


def test_create_a_voice_from_an_uploaded_clip_then_speak_with_it(served, tmp_path_factory):
    """POST /v1/audio/voices runs voice-clone's reference pipeline and quality gate on the upload."""
    import httpx
    from clone_audio import CLEAN_TEXT, shared_clone_audio

    audio = shared_clone_audio(tmp_path_factory)
    url = served["url"]

    def upload(name, path, **data):
        return httpx.post(
            url + "/v1/audio/voices",
            files={"file": (path.name, path.read_bytes())},
            data={"name": name, **data},
            timeout=300,
        )

    made = upload("guest", audio.clean, transcript=CLEAN_TEXT, language="english")
    assert made.status_code == 201, made.text
    assert made.json()["id"] == "guest" and made.json()["kind"] == "clone"
    assert made.json()["transcript"]
    pcm = (
        served["client"]
        .audio.speech.create(
            model="qwen3-tts", voice="guest", input="Hello.", response_format="pcm", extra_body={"seed": 1}
        )
        .content
    )
    assert len(pcm) > 0 and len(pcm) % 2 == 0
    again = upload("guest", audio.clean, transcript=CLEAN_TEXT)
    assert again.status_code == 409 and again.json()["error"]["code"] == "voice_exists"
    for bad in (audio.silent, audio.not_audio):
        refused = upload("nobody", bad, transcript="words")
        assert refused.status_code == 400, refused.text
        assert set(refused.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(url + "/v1/audio/voices/nobody").status_code == 404
    assert upload("../x", audio.clean).status_code == 400


def test_load_eight_clients_fifty_requests_with_disconnects(served):
    """8 concurrent clients, 50 requests (every 5th hangs up after its first bytes): 0 errors, the
    requests share model steps, hung-up streams stop generating, memory is flat after warm-up."""
    import httpx

    url = served["url"]
    engine = served["app"].state.service.engine_for(str_model(served), "custom_voice")
    body = {"model": "qwen3-tts", "voice": "anna", "input": TEXT, "response_format": "pcm"}

    def rss_mb() -> float:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

    errors, sizes, lock = [], [], threading.Lock()

    def client(requests: list[int]):
        with httpx.Client(timeout=120) as http:
            for n in requests:
                try:
                    with http.stream("POST", url + "/v1/audio/speech", json={**body, "seed": n}) as reply:
                        if reply.status_code != 200:
                            raise AssertionError(reply.read())
                        got = 0
                        for piece in reply.iter_bytes():
                            got += len(piece)
                            if n % 5 == 4:
                                break  # hang up mid-stream
                    with lock:
                        sizes.append(got)
                except Exception as exc:  # noqa: BLE001 - counted, reported below
                    with lock:
                        errors.append(repr(exc))

    def run(requests_per_client: list[list[int]]):
        threads = [threading.Thread(target=client, args=(r,)) for r in requests_per_client]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)

    run([[i] for i in range(8)])  # warm-up round
    warm = rss_mb()
    rows_before = engine.max_rows_seen
    run([list(range(8 + c, 58, 8)) for c in range(8)])  # 50 more requests, 8 clients
    assert not errors, errors[:3]
    assert len(sizes) == 58 and all(s > 0 for s in sizes)
    assert max(rows_before, engine.max_rows_seen) >= 2  # requests were batched into shared steps
    deadline = time.time() + 30
    while engine.active and time.time() < deadline:
        time.sleep(0.1)
    assert engine.active == 0  # hung-up streams left the batch
    assert rss_mb() - warm < 150


def test_the_server_logs_every_request_with_its_timing_after_the_apps_logging_setup(tmp_path, capsys):
    """voice-serve runs inside errors.run_main, which keeps "audiobox" loggers at WARNING: the
    request lines must still reach stderr (they once did not)."""
    import logging

    from audiobox.errors import show_library_warnings
    from audiobox.paths import Dirs
    from audiobox.serve.app import create_app, log, log_requests
    from audiobox.serve.config import ServeConfig
    from starlette.testclient import TestClient

    show_library_warnings()
    before = (log.level, log.propagate)
    handler = log_requests()
    try:
        with TestClient(
            create_app(ServeConfig(dirs=Dirs(cache=tmp_path / "c", work=tmp_path / "w")))
        ) as http:
            assert http.get("/v1/models").status_code == 200
            assert http.post("/v1/audio/speech", json={}).status_code == 400
    finally:
        log.removeHandler(handler)
        log.setLevel(before[0])
        log.propagate = before[1]
    lines = [line for line in capsys.readouterr().err.splitlines() if " /v1/" in line]
    assert len(lines) == 2, lines
    assert "GET /v1/models 200" in lines[0] and "POST /v1/audio/speech 400" in lines[1]
    assert all(re.search(r" \d+\.\d{3}s bytes=\d+", line) for line in lines)
    assert logging.getLogger("qwen_tts").getEffectiveLevel() >= logging.WARNING  # no config chatter


def str_model(served) -> str:
    return served["app"].state.service.config.models["custom_voice"]


def test_api_key_and_binding_rules(tmp_path, monkeypatch):
    from audiobox.paths import Dirs
    from audiobox.serve.app import create_app
    from audiobox.serve.config import ServeConfig
    from starlette.testclient import TestClient

    with pytest.raises(UserError, match="without an API key"):
        check_binding("0.0.0.0", None, env={})
    with pytest.raises(UserError, match="too short"):
        check_binding("0.0.0.0", "short", env={})
    check_binding("0.0.0.0", KEY, env={})
    check_binding("127.0.0.1", None, env={})
    check_binding("::1", None, env={})
    check_binding("0.0.0.0", None, env={"VOICE_SERVE_PUBLISHED_ON": "127.0.0.1"})  # ./run voice-serve
    with pytest.raises(UserError):
        check_binding("0.0.0.0", None, env={"VOICE_SERVE_PUBLISHED_ON": "0.0.0.0"})
    (tmp_path / ".env").write_text(f"# local secrets\nexport VOICE_SERVE_API_KEY='{KEY}'\n")
    assert read_api_key(env={}, env_file=tmp_path / ".env") == KEY
    assert read_api_key(env={"VOICE_SERVE_API_KEY": "from-env-0123456789"}, env_file=tmp_path / ".env") == (
        "from-env-0123456789"
    )
    config = ServeConfig(dirs=Dirs(cache=tmp_path / "c", work=tmp_path / "w"), api_key=KEY)
    with TestClient(create_app(config)) as http:
        assert http.get("/").status_code == 200  # the page loads; its API calls carry the key
        denied = http.get("/v1/models")
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
        assert http.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert http.post("/v1/audio/speech", json={}).status_code == 401


def test_voice_serve_cli_refuses_an_open_network_bind(tmp_path, monkeypatch, capsys):
    from audiobox.cli.voice_serve import main

    monkeypatch.delenv("VOICE_SERVE_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["--host", "0.0.0.0", "--cache", str(tmp_path)]) == 2
    assert "without an API key" in capsys.readouterr().err


def test_stream_chunk_sizes_are_a_server_setting(tmp_path, capsys):
    from audiobox.cli.voice_serve import main
    from audiobox.paths import Dirs
    from audiobox.serve.config import ServeConfig
    from audiobox.serve.service import SpeechService
    from audiobox.tts.stream import StreamOptions

    dirs = Dirs(cache=tmp_path / "c", work=tmp_path / "w")
    assert SpeechService(ServeConfig(dirs=dirs)).stream_options() == StreamOptions()
    tuned = SpeechService(ServeConfig(dirs=dirs, first_chunk_frames=4, chunk_frames=24, max_batch=2))
    assert tuned.stream_options() == StreamOptions(first_chunk_frames=4, chunk_frames=24, max_batch=2)
    with pytest.raises(SystemExit) as refused:
        main(["--first-chunk-frames", "0"])
    assert refused.value.code == 2 and "at least 1" in capsys.readouterr().err
    assert main(["--chunk-frames", "301", "--cache", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --first-chunk-frames and --chunk-frames must be at most 300"
    ]


def test_voice_serve_help_does_not_import_torch():
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    check = (
        f"import sys; sys.path.insert(0, {str(root / 'lib')!r})\n"
        "from audiobox.cli.voice_serve import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print('HEAVY', sorted(m for m in ('torch', 'qwen_tts', 'transformers') if m in sys.modules), code)"
    )
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert "HEAVY [] 0" in out.stdout, out.stdout + out.stderr
    assert "VOICE_SERVE_API_KEY" in out.stdout


from chromium import chromium_binary, headless_page  # noqa: E402

needs_chromium = pytest.mark.skipif(
    chromium_binary() is None, reason="chromium is not installed (make system-deps)"
)


def _wait_for_takes(page, count: int) -> dict:
    """The page's own report once ``count`` takes arrived and every scheduled chunk played (or it failed)."""
    deadline = time.time() + 120
    report = {}
    while time.time() < deadline:
        report = json.loads(page.evaluate("JSON.stringify(window.speechReport)"))
        if report["takes"] >= count and report["played"] >= report["scheduled"] > 0 or report["errors"]:
            break
        time.sleep(0.3)
    return report


@needs_chromium
def test_web_page_streams_and_plays_in_headless_chromium(served, tmp_path):
    """Real headless Chromium, driven over the DevTools protocol: load the page, pick a voice, type
    text, press Speak; the page reports bytes arrived, chunks scheduled and played; screenshot kept."""
    pytest.importorskip("websocket")
    with headless_page(tmp_path / "profile") as page:
        page.open(served["url"] + "/")
        page.wait_for("document.querySelectorAll('#voice option').length")
        assert "anna" in page.evaluate(
            "[...document.querySelectorAll('#voice option')].map(o => o.value).join(',')"
        )
        page.evaluate(
            "document.getElementById('voice').value = 'anna';"
            "document.getElementById('text').value = 'Hello from the browser test.';"
            "document.getElementById('variants').value = '2';"
            "document.getElementById('seed').value = '9';"
            "document.getElementById('speak').click(); true"
        )
        report = _wait_for_takes(page, 2)
        shot = page.screenshot(tmp_path / "voice-serve-page.png")
        print(f"screenshot: {shot}")
        assert not report["errors"], report
        assert report["takes"] == 2 and report["bytes"] > 0
        assert report["played"] >= report["scheduled"] >= 2  # every chunk scheduled was played out
        links = page.evaluate("[...document.querySelectorAll('#takes a')].map(a => a.download).join(',')")
        assert links == "take-1-seed-9.wav,take-2-seed-10.wav"
        assert shot.stat().st_size > 5000


@needs_chromium
def test_web_page_with_an_api_key_creates_a_voice_from_a_clip_and_speaks_it(
    served, tmp_path, tmp_path_factory
):
    """A server that wants a key: the page says so until the key is typed into its field; then the
    create-voice form uploads a clip (chosen as a user would, through the file input), the new voice
    appears in the list and in the registry, and speaking with it streams audio that plays."""
    import dataclasses

    from audiobox.serve.app import create_app
    from audiobox.voices import VoiceRegistry
    from clone_audio import CLEAN_TEXT, shared_clone_audio

    pytest.importorskip("websocket")
    audio = shared_clone_audio(tmp_path_factory)
    service = served["app"].state.service
    locked = create_app(dataclasses.replace(service.config, api_key=KEY), service=service)
    server, thread, url = _start(locked)
    try:
        with headless_page(tmp_path / "profile") as page:
            page.open(url + "/")
            refused = page.wait_for("document.getElementById('status').textContent")
            assert "API key" in refused and not page.evaluate(
                "document.querySelectorAll('#voice option').length"
            )

            page.evaluate(f"document.getElementById('apikey').value = '{KEY}'; loadVoices()")
            assert page.wait_for("document.querySelectorAll('#voice option').length")

            page.set_files("#vfile", audio.clean)
            page.evaluate(
                "document.getElementById('vname').value = 'webguest';"
                f"document.getElementById('vtext').value = {json.dumps(CLEAN_TEXT)};"
                "document.getElementById('create').click(); true"
            )
            created = page.wait_for(
                "(s => s.startsWith('created') || s.includes('error') ? s : '')"
                "(document.getElementById('vstatus').textContent)",
                timeout=300,
            )
            assert created == "created webguest", created
            assert page.wait_for(
                "[...document.querySelectorAll('#voice option')].some(o => o.value === 'webguest')"
            )
            record = VoiceRegistry(served["dirs"].voices).get("webguest").data
            assert record["engine"] == "clone_prompt" and record["prompts"]
            assert record["source"]["type"] == "upload" and record["source"]["filename"] == audio.clean.name

            page.evaluate(
                "document.getElementById('voice').value = 'webguest';"
                "document.getElementById('text').value = 'The new voice speaks.';"
                "document.getElementById('speak').click(); true"
            )
            report = _wait_for_takes(page, 1)
            page.screenshot(tmp_path / "voice-serve-new-voice.png")
            assert not report["errors"], report
            assert (
                report["takes"] == 1 and report["bytes"] > 0 and report["played"] >= report["scheduled"] > 0
            )
            assert page.evaluate("localStorage.getItem('voice-serve-key')") == KEY  # kept for the next visit
    finally:
        server.should_exit = True
        thread.join(timeout=10)
