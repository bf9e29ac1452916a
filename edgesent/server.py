"""The HTTP service behind ``edgesent serve``: a FastAPI app around one ``Classifier``.

Endpoints: ``POST /v1/classify``, ``GET /v1/model``, ``GET /healthz``, ``GET /readyz``,
``GET /metrics`` (Prometheus text format), ``/openapi.json``, and the API docs at ``/docs``
(Swagger UI) and ``/redoc``, whose scripts and styles are served by the app itself (from the
``fastapi-offline`` package), so they work on a machine with no internet access. Every error
is JSON, ``{"error": {"code": "...", "message": "..."}}``. Texts from concurrent requests are
micro-batched (see ``edgesent.batching``). Needs the ``[serve]`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse
    from fastapi_offline import FastAPIOffline
    from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
    from starlette.exceptions import HTTPException
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f'edgesent.server needs the [serve] extra ({exc.name} is missing): '
                      'pip install "edgesent[serve]"', name=exc.name) from exc

from edgesent import __version__
from edgesent.batching import BatcherClosedError, MicroBatcher
from edgesent.runner import DEFAULT_BATCH_SIZE

if TYPE_CHECKING:
    from edgesent.classifier import Classifier, Prediction

logger = logging.getLogger(__name__)

WARMUP_TEXT = "The battery lasts all day and the screen is bright."
DOCS_ASSETS = "/docs-assets"  # where the Swagger UI and ReDoc scripts are served from
ENDPOINTS = ("/v1/classify", "/v1/model", "/healthz", "/readyz", "/metrics", "/openapi.json",
             "/docs", "/redoc", DOCS_ASSETS)
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class ServeSettings:
    """Limits and batching of the service (the ``edgesent serve`` options).

    >>> ServeSettings(max_batch=1, max_wait_ms=0).max_texts
    256
    """

    max_batch: int = 32
    max_wait_ms: float = 0.0
    max_body_bytes: int = 1 << 20
    max_texts: int = 256
    max_chars: int = 20_000


class ApiError(HTTPException):
    """An HTTP error with a machine-readable ``code``, rendered as the JSON error body."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(status_code=status_code, detail=message)
        self.code = code


class ClassifyRequest(BaseModel):
    """One text (``text``) or several (``texts``), never both."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: str | None = Field(None, description="One review; the answer is one result.")
    texts: list[str] | None = Field(None, description="Several reviews; answered in order.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ClassifyRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError('give exactly one of "text" (a string) or "texts" (a list)')
        return self


class Result(BaseModel):
    """``Prediction.to_dict()`` plus the text, as ``edgesent predict --format json``."""

    text: str
    label: str
    score: float
    scores: dict[str, float]


class Results(BaseModel):
    results: list[Result]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class _Histogram:
    def __init__(self, buckets: Iterable[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, count in zip(self.buckets, self.counts, strict=True):
            running += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        wrap = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{wrap} {self.sum:.6g}", f"{name}_count{wrap} {self.count}"]
        return out


class _Metrics:
    """Counters and histograms of the service, written in the Prometheus text format."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.errors: Counter[str] = Counter()
        self.latency: dict[str, _Histogram] = {}
        self.batch_size = _Histogram(BATCH_BUCKETS)
        self.batch_seconds = _Histogram(LATENCY_BUCKETS)
        self.in_flight = 0

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests[(endpoint, method, status)] += 1
        self.latency.setdefault(endpoint, _Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self, *, ready: bool, pending: int) -> str:
        out = _family("requests_total", "counter", "HTTP requests answered.")
        out += [f'edgesent_requests_total{{endpoint="{e}",method="{m}",status="{s}"}} {n}'
                for (e, m, s), n in sorted(self.requests.items())]
        out += _family("errors_total", "counter", "Error responses, by error code.")
        out += [f'edgesent_errors_total{{code="{code}"}} {n}'
                for code, n in sorted(self.errors.items())]
        out += _family("request_duration_seconds", "histogram", "Time to answer a request.")
        for endpoint, hist in sorted(self.latency.items()):
            out += hist.lines("edgesent_request_duration_seconds", f'endpoint="{endpoint}"')
        out += _family("batch_size", "histogram", "Texts per call into the classifier.")
        out += self.batch_size.lines("edgesent_batch_size")
        out += _family("batch_duration_seconds", "histogram", "Time of one classifier call.")
        out += self.batch_seconds.lines("edgesent_batch_duration_seconds")
        for name, value, text in (
            ("requests_in_flight", self.in_flight, "Requests being answered."),
            ("queue_texts", pending, "Texts waiting for a model batch."),
            ("ready", int(ready), "1 once the model is loaded and warmed up."),
        ):
            out += [*_family(name, "gauge", text), f"edgesent_{name} {value}"]
        return "\n".join(out) + "\n"


def _family(name: str, kind: str, text: str) -> list[str]:
    return [f"# HELP edgesent_{name} {text}", f"# TYPE edgesent_{name} {kind}"]


def _error_response(metrics: _Metrics, status: int, code: str, message: str) -> JSONResponse:
    """The JSON error body every failure is answered with; counted in the metrics."""
    metrics.errors[code] += 1
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class _ServiceMiddleware:
    """Body-size limit (Content-Length and the streamed body) plus request metrics."""

    def __init__(self, app: Any, metrics: _Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.limit = max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        metrics = self.metrics

        async def send_and_watch(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.in_flight += 1
        try:
            declared = dict(scope.get("headers") or []).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.limit:
                response = _error_response(metrics, 413, "body_too_large", self._too_large())
                await response(scope, receive, send_and_watch)
                return
            await self.app(scope, self._limited(receive), send_and_watch)
        finally:
            metrics.in_flight -= 1
            endpoint = getattr(scope.get("route"), "path", None) or scope.get("path", "")
            if endpoint.startswith(f"{DOCS_ASSETS}/"):
                endpoint = DOCS_ASSETS
            endpoint = endpoint if endpoint in ENDPOINTS else "other"
            method = scope.get("method", "")  # any token is a valid method: keep labels bounded
            method = method if method in METHODS else "other"
            metrics.observe_request(endpoint, method, status,
                                    time.perf_counter() - started)

    def _too_large(self) -> str:
        return f"the request body is larger than {self.limit} bytes (--max-body-bytes)"

    def _limited(self, receive: Any) -> Any:
        received = 0

        async def receive_limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise ApiError(413, "body_too_large", self._too_large())
            return message

        return receive_limited


def _check_texts(texts: list[str], settings: ServeSettings, *, field: str) -> None:
    """Raise ``ApiError`` naming the first text that is blank, too long or not UTF-8."""
    if not texts:
        raise ApiError(422, "empty_list", f'"{field}" is empty; send at least one text')
    if len(texts) > settings.max_texts:
        raise ApiError(413, "too_many_texts", f'"{field}" holds {len(texts)} texts; the limit '
                       f"is {settings.max_texts} per request (--max-texts)")
    for i, text in enumerate(texts):
        where = f'"{field}"' if field == "text" else f"{field}[{i}]"
        if len(text) > settings.max_chars:
            raise ApiError(413, "text_too_long", f"{where} has {len(text)} characters; the "
                           f"limit is {settings.max_chars} (--max-chars)")
        if not text.strip():
            raise ApiError(422, "blank_text", f"{where} is blank; send some words to classify")
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ApiError(422, "invalid_text", f"{where} holds an unpaired surrogate at "
                               f"character {exc.start}") from None


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number",
               float: "a number", bool: "true/false", type(None): "null"}
_ASK = 'send a JSON object like {"text": "..."} or {"texts": ["...", "..."]}'


def _parse_body(body: bytes) -> ClassifyRequest:
    """Decode and validate a ``/v1/classify`` body, whatever its Content-Type.

    Raises ``ApiError`` 400 for a body that is not JSON, 422 for JSON of the wrong shape.
    """
    if not body.strip():
        raise ApiError(400, "invalid_json", f"the request body is empty; {_ASK}")
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc.msg} "
                       f"(line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        reason = ("nested too deeply" if isinstance(exc, RecursionError)
                  else "not UTF-8" if isinstance(exc, UnicodeDecodeError)
                  else "it holds a number with too many digits")  # int_max_str_digits
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {reason}"
                       ) from None
    if not isinstance(payload, dict):
        raise ApiError(422, "invalid_request", f"the request body is "
                       f"{_JSON_TYPES.get(type(payload), 'a value')}; {_ASK}")
    try:
        return ClassifyRequest.model_validate(payload)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request",
                       "; ".join(_describe(err) for err in exc.errors())) from None


def _describe(err: Mapping[str, Any]) -> str:
    loc = [str(p) for p in err.get("loc", ())]
    where = "".join(f"[{p}]" if p.isdigit() else (f".{p}" if i else p) for i, p in enumerate(loc))
    kind, got = err.get("type", ""), _JSON_TYPES.get(type(err.get("input")), "a value")
    if kind == "extra_forbidden":
        return f'unknown field "{where}"; {_ASK}'
    if kind == "string_type":
        return f'"{where}" must be a string, not {got}'
    if kind == "list_type":
        return f'"{where}" must be an array of strings, not {got}'
    message = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
    return f'"{where}": {message}' if where else message


def create_app(classifier: Classifier, settings: ServeSettings | None = None) -> FastAPI:
    """The ASGI app serving ``classifier``; run it with uvicorn.

    >>> from edgesent.classifier import Classifier
    >>> app = create_app(Classifier.load(threads=1), ServeSettings(max_batch=16))
    >>> sorted(route.path for route in app.routes if route.path.startswith("/v1"))
    ['/v1/classify', '/v1/model']
    >>> import uvicorn; uvicorn.run(app, port=8080)  # doctest: +SKIP
    """
    settings = settings or ServeSettings()
    metrics = _Metrics()
    state: dict[str, Any] = {"ready": False, "warmup_error": None}
    batch_size = max(settings.max_batch, DEFAULT_BATCH_SIZE)

    def predict(texts: list[str]) -> list[Prediction]:
        # One call for everything gathered: the classifier sorts the texts by length and
        # splits them into model calls under its token budget, not one batch padded to the
        # longest text.
        return classifier.predict(texts, batch_size=batch_size)

    batcher: MicroBatcher[Prediction] = MicroBatcher(
        predict, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
        on_batch=metrics.observe_batch)

    async def warm_up() -> None:
        try:
            await asyncio.to_thread(classifier.predict, [WARMUP_TEXT])
        except Exception as exc:
            logger.exception("warm-up prediction failed")
            state["warmup_error"] = f"{type(exc).__name__}: {exc}"
            return
        state["ready"] = True
        logger.info("model warmed up; ready")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        warming = asyncio.create_task(warm_up())
        try:
            yield
        finally:
            state["ready"] = False
            warming.cancel()
            await batcher.close()

    # FastAPIOffline: /docs and /redoc load their assets from DOCS_ASSETS, not a CDN; no
    # validator badge either (Swagger UI would fetch it from outside).
    app = FastAPIOffline(title="edgesent", version=__version__, lifespan=lifespan,
                         summary="Product-review sentiment, int8 ONNX on CPU.",
                         static_url=DOCS_ASSETS, swagger_ui_parameters={"validatorUrl": None})
    app.add_middleware(_ServiceMiddleware, metrics=metrics,
                       max_body_bytes=settings.max_body_bytes)
    error_responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody} for status in (400, 413, 422, 500, 503)}

    @app.exception_handler(HTTPException)
    async def _http_error(request: Any, exc: HTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or {404: "not_found", 405: "method_not_allowed",
                                              413: "body_too_large"}.get(exc.status_code,
                                                                         "http_error")
        return _error_response(metrics, exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _crash(request: Any, exc: Exception) -> JSONResponse:
        logger.error("unhandled error", exc_info=exc)
        return _error_response(metrics, 500, "internal_error", "internal server error")

    @app.post("/v1/classify", response_model=Result | Results, responses=error_responses,
              summary="Classify one review or a list of reviews", openapi_extra={
                  "requestBody": {"required": True, "content": {"application/json": {
                      "schema": ClassifyRequest.model_json_schema()}}}})
    async def classify(request: Request) -> JSONResponse:
        body = _parse_body(await request.body())
        single = body.text is not None
        texts = [body.text] if body.text is not None else list(body.texts or [])
        _check_texts(texts, settings, field="text" if single else "texts")
        try:
            predictions = await batcher.submit_many(texts)
        except BatcherClosedError as exc:
            raise ApiError(503, "shutting_down", str(exc)) from None
        except Exception as exc:
            logger.error("model call failed", exc_info=exc)
            raise ApiError(500, "model_error", f"the model failed: {type(exc).__name__}") from None
        for i, prediction in enumerate(predictions):
            if not prediction.ok:  # e.g. only zero-width or control characters: no tokens
                where = '"text"' if single else f"texts[{i}]"
                raise ApiError(422, "blank_text", f"{where} has no words the model can read "
                               f"({prediction.error}); send some words to classify")
        results = [{"text": t, **p.to_dict()} for t, p in zip(texts, predictions, strict=True)]
        return JSONResponse(results[0] if single else {"results": results})

    @app.get("/v1/model", summary="The bundle manifest of the model being served")
    async def model() -> JSONResponse:
        return JSONResponse(classifier.manifest.to_dict())

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: model loaded and a warm-up prediction done",
             responses={503: {"description": "Still warming up, or warm-up failed"}})
    async def readyz() -> JSONResponse:
        if state["ready"]:
            return JSONResponse({"status": "ready"})
        failed = state["warmup_error"]
        body = {"status": "failed", "detail": failed} if failed else {"status": "starting"}
        return JSONResponse(body, status_code=503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        text = metrics.render(ready=bool(state["ready"]), pending=batcher.pending)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app

