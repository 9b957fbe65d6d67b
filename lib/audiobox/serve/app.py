"""The HTTP layer of voice-serve (FastAPI on uvicorn): OpenAI's speech API, a voices API, a web page.

Everything real is in :mod:`audiobox.serve.service` and the library; this module maps HTTP onto it
and keeps the promises of a public endpoint: bearer-token auth when configured, body and input
limits, OpenAI-shaped JSON errors (never a traceback), one log line per request with its timing,
and a streamed response that stops its generation when the client goes away.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import tempfile
import time
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from audiobox.errors import UserError
from audiobox.fsutil import atomic_write_bytes
from audiobox.serve.config import ServeConfig
from audiobox.serve.encode import CONTENT_TYPES, FORMATS, encode_stream
from audiobox.serve.service import ApiError, SpeechOrder, SpeechService

log = logging.getLogger("audiobox.serve")
PAGE = Path(__file__).with_name("page.html")


class VoiceRef(BaseModel):
    id: str


class SpeechBody(BaseModel):
    """OpenAI's /v1/audio/speech body, plus language/seed/style/tone/select_best."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=200)
    input: str = Field(min_length=1)
    voice: str | VoiceRef
    response_format: Literal[FORMATS] = "mp3"  # type: ignore[valid-type]
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(None, max_length=4096)
    stream_format: Literal["audio", "sse"] = "audio"
    language: str = Field("auto", max_length=40)
    seed: int | None = Field(None, ge=0, lt=2**31)
    style: str | None = Field(None, max_length=100)
    tone: str | None = Field(None, max_length=100)
    select_best: int | None = Field(None, ge=2)


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 401:
        kind = "authentication_error"
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status
    )


class _BodyTooLarge(Exception):
    pass


class Gatekeeper:
    """ASGI middleware, before any routing or body parsing: the API key on /v1/*, the body-size
    limit (declared or streamed), and one log line per request with its timing."""

    def __init__(self, app, config: ServeConfig):
        self.app = app
        self.config = config

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        path = scope["path"]
        limit = (
            self.config.limits.max_upload_bytes
            if path.startswith("/v1/audio/voices")
            else self.config.limits.max_body_bytes
        )
        status = {"code": 500, "sent": False, "bytes": 0, "first": None}
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")

        async def send_logged(message):
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            elif message["type"] == "http.response.body" and message.get("body"):
                status["bytes"] += len(message["body"])
                if status["first"] is None:
                    status["first"] = time.perf_counter() - started
            await send(message)

        received = 0

        async def receive_limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        try:
            if path.startswith("/v1/") and not self._authorized(headers):
                reply = error_body(
                    401, "missing or wrong API key (send 'Authorization: Bearer <key>')", "invalid_api_key"
                )
                await reply(scope, receive, send_logged)
                return
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise _BodyTooLarge
            await self.app(scope, receive_limited, send_logged)
        except _BodyTooLarge:
            if not status["sent"]:
                await error_body(413, f"request body over the limit of {limit} bytes", "body_too_large")(
                    scope, receive, send_logged
                )
        finally:
            first = f" first_byte={status['first']:.3f}s" if status["first"] is not None else ""
            log.info(
                "%s %s %s %.3fs bytes=%d%s",
                scope["method"],
                path,
                status["code"],
                time.perf_counter() - started,
                status["bytes"],
                first,
            )

    def _authorized(self, headers: dict) -> bool:
        if not self.config.api_key:
            return True
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(token.strip(), self.config.api_key)


def create_app(config: ServeConfig, service: SpeechService | None = None) -> FastAPI:
    service = service or SpeechService(config)
    app = FastAPI(title="voice-serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.add_middleware(Gatekeeper, config=config)

    @app.exception_handler(ApiError)
    async def api_error(_request, exc: ApiError):
        return error_body(exc.status, exc.message, exc.code, exc.param)

    @app.exception_handler(UserError)
    async def user_error(_request, exc: UserError):
        return error_body(400, str(exc), "invalid_request")

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
        return error_body(
            400, f"{where or 'request'}: {first.get('msg', 'invalid request')}", "invalid_value", where
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        return error_body(exc.status_code, str(exc.detail), "not_found" if exc.status_code == 404 else None)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_body(500, "internal server error (see the server log)", "internal_error")

    # ------------------------------------------------------------------ page and models
    @app.get("/", include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "owned_by": "py-audio-box"} for m in config.model_ids],
        }

    # ------------------------------------------------------------------ speech
    @app.post("/v1/audio/speech")
    async def speech(body: SpeechBody):
        if len(body.input) > config.limits.max_input_chars:
            raise ApiError(
                400,
                f"input is {len(body.input)} characters; the limit is {config.limits.max_input_chars}",
                "input_too_long",
                "input",
            )
        variants = body.select_best or 1
        if variants > config.limits.max_variants:
            raise ApiError(
                400,
                f"select_best is limited to {config.limits.max_variants} variants",
                "invalid_value",
                "select_best",
            )
        order = SpeechOrder(
            model=body.model,
            text=body.input,
            voice=body.voice if isinstance(body.voice, str) else body.voice.id,
            instructions=body.instructions,
            style=body.style,
            tone=body.tone,
            language=body.language,
            seed=body.seed,
            variants=variants,
        )
        planned = await run_in_threadpool(service.plan, order)
        handles = [planned.engine.submit(job) for job in planned.jobs]
        headers = {"x-seed": str(planned.jobs[0].seed), "x-voice": planned.voice_id}
        if variants > 1:
            try:
                best, report = await run_in_threadpool(service.select_best, planned, handles)
            finally:
                for handle in handles:
                    handle.cancel()
            headers.update({"x-selected-take": str(report["selected_take"]), "x-seed": str(report["seed"])})
            source = iter([best])
        else:
            source = iter(handles[0])
        encoded = encode_stream(source, body.response_format, body.speed)

        async def audio():
            try:
                async for data in iterate_in_threadpool(encoded):
                    yield data
            finally:  # finished, failed, or the client went away: stop generating
                for handle in handles:
                    handle.cancel()
                try:
                    encoded.close()  # ends ffmpeg; a worker thread still inside it finishes it instead
                except ValueError:
                    pass

        async def events():
            total = 0
            async for data in audio():
                total += len(data)
                delta = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")}
                yield f"data: {json.dumps(delta)}\n\n"
            frames = sum(h.stats.frames for h in handles)
            usage = {
                "input_tokens": len(body.input),
                "output_tokens": frames,
                "total_tokens": len(body.input) + frames,
            }
            yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n"

        if body.stream_format == "sse":
            return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
        return StreamingResponse(audio(), media_type=CONTENT_TYPES[body.response_format], headers=headers)

    # ------------------------------------------------------------------ voices
    @app.get("/v1/audio/voices")
    async def list_voices():
        return {"object": "list", "data": await run_in_threadpool(service.list_voices)}

    @app.get("/v1/audio/voices/{voice_id}")
    async def get_voice(voice_id: str):
        return await run_in_threadpool(service.get_voice, voice_id)

    @app.delete("/v1/audio/voices/{voice_id}")
    async def delete_voice(voice_id: str):
        if not service.registry.exists(voice_id):
            raise ApiError(
                404, f"voice {voice_id!r} not found (built-in speakers cannot be deleted)", "voice_not_found"
            )
        await run_in_threadpool(service.registry.delete, voice_id)
        return {"id": voice_id, "object": "voice.deleted", "deleted": True}

    @app.get("/v1/audio/voices/{voice_id}/bundle")
    async def export_voice(voice_id: str):
        if not service.registry.exists(voice_id):
            raise ApiError(404, f"voice {voice_id!r} not found", "voice_not_found")
        folder = Path(tempfile.mkdtemp(prefix="voice-serve-export-"))
        path = await run_in_threadpool(service.registry.export_zip, voice_id, folder / f"{voice_id}.zip")
        return FileResponse(path, media_type="application/zip", filename=path.name)

    @app.post("/v1/audio/voices")
    async def create_voice(
        name: str = Form(..., min_length=1, max_length=64),
        file: UploadFile = File(...),
        transcript: str | None = Form(None, max_length=2000),
        language: str = Form("auto", max_length=40),
    ):
        with tempfile.TemporaryDirectory(prefix="voice-serve-clip-") as folder:
            suffix = Path(file.filename or "clip").suffix.lower()[:8]
            clip = Path(folder) / f"upload{suffix if suffix.isascii() and suffix[1:].isalnum() else ''}"
            atomic_write_bytes(clip, await file.read())
            voice = await run_in_threadpool(
                service.create_voice, name, clip, Path(file.filename or "clip").name, transcript, language
            )
        return JSONResponse(voice, status_code=201)

    @app.post("/v1/audio/voices/import")
    async def import_voice(
        file: UploadFile = File(...),
        name: str | None = Form(None),
        force: bool = Form(False),
    ):
        with tempfile.TemporaryDirectory(prefix="voice-serve-import-") as folder:
            path = Path(folder) / "bundle.zip"
            atomic_write_bytes(path, await file.read())
            voice = await run_in_threadpool(service.registry.import_zip, path, name or None, force)
        return await run_in_threadpool(service.get_voice, voice.slug)

    return app


def log_requests() -> logging.Handler:
    """Every request as one timed line on stderr. The apps keep "audiobox" loggers at WARNING
    (errors.show_library_warnings), so the server's own logger gets its level and handler here;
    other libraries speak only from WARNING up."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return handler


def serve(config: ServeConfig) -> None:
    """Run the server until interrupted (uvicorn, one process: the models live in it)."""
    import uvicorn

    log_requests()
    app = create_app(config)
    log.info(
        "voice-serve on http://%s:%d (auth %s)", config.host, config.port, "on" if config.api_key else "off"
    )
    try:
        uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False)
    finally:
        app.state.service.close()
