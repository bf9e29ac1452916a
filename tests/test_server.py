"""`edgesent serve` end to end: a real uvicorn server on loopback, in a subprocess."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgesent.cli import main as edgesent_main
from edgesent.runner import available_cpus
from edgesent.server import ServeSettings, create_app

REPO = Path(__file__).resolve().parents[1]
REVIEWS = [
    "Great phone, I love the screen and the battery.",
    "Awful. It broke after a week and I want a refund.",
    "The box arrived and the cable works.",
    "Excellent quality, would recommend to anyone!",
    "Disappointed: poor battery, a waste of money.",
    "Okay product for the price.",
    "Perfect size and amazing color, very happy",
    "The charger is terrible and the shipping was poor",
]
LIMITS = {"max_texts": 8, "max_chars": 400, "max_body_bytes": 8192}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def request(port: int, method: str, path: str, body: Any = None, *,
            headers: dict[str, str] | None = None, timeout: float = 30
            ) -> tuple[int, dict[str, str], bytes]:
    """One HTTP exchange; ``body`` may be bytes, a JSON-able object or a chunk iterator."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        chunked = body is not None and not isinstance(body, bytes | str | dict | list)
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
        conn.request(method, path, body=body, headers=hdrs, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def get_json(port: int, path: str) -> tuple[int, Any]:
    status, _, data = request(port, "GET", path)
    return status, json.loads(data)


@contextmanager
def serve(bundle: Path, log: Path, *args: str) -> Iterator[tuple[int, subprocess.Popen]]:
    """Start ``edgesent serve`` in a subprocess and wait until /readyz says ready."""
    port = free_port()
    cmd = [sys.executable, "-m", "edgesent.cli", "serve", "--model", str(bundle),
           "--port", str(port), "--threads", "1", "--log-level", "warning", *args]
    with open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=subprocess_env())
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if get_json(port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready after 60 s:\n{log.read_text()}")
            time.sleep(0.05)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def served(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[int, subprocess.Popen, Path]]:
    """One `edgesent serve` shared by the module's tests (the SIGTERM test has its own)."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with serve(tiny_bundle, log, "--max-batch", "8", "--max-wait-ms", "5",
               *[f"--{k.replace('_', '-')}={v}" for k, v in LIMITS.items()]) as (port, proc):
        yield port, proc, log


@pytest.fixture
def server(served: tuple[int, subprocess.Popen, Path]) -> int:
    port, proc, log = served
    assert proc.poll() is None, f"the module's server has exited:\n{log.read_text()}"
    return port


def expected(classifier, text: str) -> dict[str, Any]:
    return {"text": text, **classifier.predict(text).to_dict()}


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Same text, label and keys; probabilities equal to float32 precision (a float32 sum
    may round differently in another batch shape)."""
    assert got.keys() == want.keys()
    assert (got["text"], got["label"]) == (want["text"], want["label"])
    assert got["score"] == pytest.approx(want["score"], rel=1e-5, abs=1e-7)
    assert got["scores"] == pytest.approx(want["scores"], rel=1e-5, abs=1e-7)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition → {'name{labels}': value}; checks every line's syntax."""
    samples: dict[str, float] = {}
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$')
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = sample.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        samples[match.group(1)] = float(match.group(2))
    return samples


def metrics(port: int) -> dict[str, float]:
    status, headers, data = request(port, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    return parse_metrics(data.decode())


def settled(port: int, key: str, want: float, timeout: float = 10) -> float:
    """The metric ``key`` once it reaches ``want`` (a request is counted just after its
    response is sent), or its value when ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    while (value := metrics(port).get(key, 0)) < want and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def test_single_text_answers_as_the_classifier_does(server, tiny_classifier):
    for text in REVIEWS:
        status, body = request(server, "POST", "/v1/classify", {"text": text})[::2]
        assert status == 200
        assert_same(json.loads(body), expected(tiny_classifier, text))


def test_list_answers_in_order_as_the_classifier_does(server, tiny_classifier):
    status, _, body = request(server, "POST", "/v1/classify", {"texts": REVIEWS})
    assert status == 200
    results = json.loads(body)["results"]
    assert [r["text"] for r in results] == REVIEWS
    for got, text in zip(results, REVIEWS, strict=True):
        assert_same(got, expected(tiny_classifier, text))
    assert {r["label"] for r in results} == {"negative", "positive"}


def test_64_concurrent_clients_are_all_answered_correctly(server, tiny_classifier):
    texts = [f"{REVIEWS[i % len(REVIEWS)]} (client {i})" for i in range(64)]
    before = metrics(server)
    start = threading.Barrier(64)

    def client(text: str) -> tuple[int, dict]:
        start.wait()
        status, _, body = request(server, "POST", "/v1/classify", {"text": text})
        return status, json.loads(body)

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(client, texts))
    for text, (status, body) in zip(texts, answers, strict=True):
        assert status == 200, body
        assert_same(body, expected(tiny_classifier, text))
    after = metrics(server)
    # Every text went through the model exactly once, in batches of at most --max-batch.
    assert after["edgesent_batch_size_sum"] - before["edgesent_batch_size_sum"] == 64
    assert after['edgesent_batch_size_bucket{le="8"}'] == after["edgesent_batch_size_count"]
    key = 'edgesent_requests_total{endpoint="/v1/classify",method="POST",status="200"}'
    assert after[key] - before.get(key, 0) == 64


BAD_INPUTS = [
    # (id, body, extra headers, status, code, words the message must contain)
    ("malformed", b'{"text": "oops"', {}, 400, "invalid_json", "not valid JSON"),
    ("empty-body", b"", {}, 400, "invalid_json", "empty"),
    ("not-utf8", b'{"text": "\xff\xfe"}', {}, 400, "invalid_json", "not valid JSON"),
    ("too-deep", b"[" * 3000 + b"]" * 3000, {}, 400, "invalid_json", "nested too deeply"),
    ("huge-number", b'{"text": ' + b"9" * 5000 + b"}", {}, 400, "invalid_json",
     "a number with too many digits"),
    ("utf8-surrogate", b'{"text": "bad \xed\xa0\x80"}', {}, 422, "invalid_text",
     "unpaired surrogate at character 4"),
    ("array-body", b'["a review"]', {}, 422, "invalid_request", "an array"),
    ("null-body", b"null", {}, 422, "invalid_request", "null"),
    ("text-number", b'{"text": 5}', {}, 422, "invalid_request", '"text" must be a string'),
    ("texts-string", b'{"texts": "abc"}', {}, 422, "invalid_request", "array of strings"),
    ("texts-item", b'{"texts": ["ok", null]}', {}, 422, "invalid_request", "texts[1]"),
    ("both", b'{"text": "a", "texts": ["b"]}', {}, 422, "invalid_request", "exactly one"),
    ("neither", b"{}", {}, 422, "invalid_request", "exactly one"),
    ("unknown-field", b'{"review": "a"}', {}, 422, "invalid_request", '"review"'),
    ("empty-list", b'{"texts": []}', {}, 422, "empty_list", "empty"),
    ("blank-text", b'{"text": "   "}', {}, 422, "blank_text", "blank"),
    ("blank-in-list", b'{"texts": ["fine", "\\n\\t"]}', {}, 422, "blank_text", "texts[1]"),
    ("surrogate", b'{"text": "bad \\ud800"}', {}, 422, "invalid_text", "surrogate"),
    ("low-surrogate-in-list", b'{"texts": ["ok", "\\udc00 x"]}', {}, 422, "invalid_text",
     "texts[1] holds an unpaired surrogate at character 0"),
    # Effectively blank: no content tokens once invisible characters are dropped.
    ("zero-width-space", b'{"text": "\\u200b"}', {}, 422, "blank_text",
     '"text" has no words the model can read'),
    ("bom-in-list", b'{"texts": ["fine", "\\ufeff"]}', {}, 422, "blank_text", "texts[1]"),
    ("controls-only", b'{"text": "\\u0000\\u0007\\u001b"}', {}, 422, "blank_text",
     "no words"),
    ("joiners-only", '{"text": "\u200d\u2060\u200c"}'.encode(), {}, 422, "blank_text",
     "no words"),
    ("too-many", json.dumps({"texts": ["ok"] * 9}).encode(), {}, 413, "too_many_texts",
     "limit is 8"),
    ("too-long", json.dumps({"text": "a" * 401}).encode(), {}, 413, "text_too_long",
     "limit is 400"),
    ("long-in-list", json.dumps({"texts": ["ok", "b" * 401]}).encode(), {}, 413,
     "text_too_long", "texts[1]"),
    ("body-too-big", json.dumps({"text": "x" * 9000}).encode(), {}, 413, "body_too_large",
     "8192 bytes"),
    ("plain-text-ctype", b"hello", {"Content-Type": "text/plain"}, 400, "invalid_json",
     "not valid JSON"),
]


@pytest.mark.parametrize(("body", "headers", "status", "code", "words"),
                         [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_a_json_error_and_the_service_lives_on(server, body, headers, status,
                                                              code, words):
    got_status, got_headers, data = request(server, "POST", "/v1/classify", body,
                                            headers=headers)
    assert got_status == status, data
    assert got_headers["content-type"] == "application/json"
    error = json.loads(data)["error"]
    assert error["code"] == code
    assert words in error["message"]
    assert get_json(server, "/healthz") == (200, {"status": "ok"})


def test_unusual_but_valid_unicode_is_answered_and_echoed_exactly(server, tiny_classifier):
    texts = ["great \U0001f600", "love it \u200b", "e\u0301xcellent ca\u0327a",
             "\u05d2\u05d3 great", "ok\u2028line\u2029para\x85next", "tab\tand\x7fdel"]
    body = b'{"texts": ["great \\ud83d\\ude00", ' + json.dumps(texts[1:])[1:].encode() + b"}"
    status, _, data = request(server, "POST", "/v1/classify", body)
    assert status == 200, data
    for got, text in zip(json.loads(data)["results"], texts, strict=True):
        assert_same(got, expected(tiny_classifier, text))


def test_streamed_body_over_the_limit_is_refused(server):
    """No Content-Length (chunked upload): the limit is enforced on the bytes received."""
    chunks = iter([b'{"text": "', b"y" * 5000, b"y" * 5000, b'"}'])
    status, _, data = request(server, "POST", "/v1/classify", chunks)
    assert status == 413
    assert json.loads(data)["error"]["code"] == "body_too_large"
    small = iter([b'{"text": ', b'"great phone"}'])
    status, _, data = request(server, "POST", "/v1/classify", small)
    assert status == 200 and json.loads(data)["label"] == "positive"


@pytest.mark.parametrize(("method", "path", "status", "code"),
                         [("GET", "/nowhere", 404, "not_found"),
                          ("GET", "/v1/classify", 405, "method_not_allowed")])
def test_unknown_routes_get_json_errors(server, method, path, status, code):
    got, _, data = request(server, method, path)
    assert got == status
    assert json.loads(data)["error"]["code"] == code


def test_health_readiness_and_model(server, tiny_classifier):
    assert get_json(server, "/healthz") == (200, {"status": "ok"})
    assert get_json(server, "/readyz") == (200, {"status": "ready"})
    status, manifest = get_json(server, "/v1/model")
    assert status == 200
    assert manifest == json.loads(json.dumps(tiny_classifier.manifest.to_dict()))
    assert manifest["labels"] == ["negative", "positive"]


def test_openapi_and_docs(server):
    status, spec = get_json(server, "/openapi.json")
    assert status == 200
    classify = spec["paths"]["/v1/classify"]["post"]
    schema = classify["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"text", "texts"}
    assert {"200", "400", "413", "422"} <= set(classify["responses"])
    assert {"/v1/model", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_work_offline(server, page):
    """Every script, style and icon of the docs pages is served by the app itself."""
    status, headers, html = request(server, "GET", page)
    assert status == 200 and headers["content-type"].startswith("text/html")
    text = html.decode()
    assert "/openapi.json" in text
    assert not re.findall(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text), text  # no outside URL
    assets = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        assert asset.startswith("/docs-assets/"), asset
        status, headers, data = request(server, "GET", asset)
        assert status == 200 and len(data) > 100, (asset, status)
        kind = {"js": "javascript", "css": "text/css", "png": "image/png"}[asset.rsplit(".", 1)[1]]
        assert kind in headers["content-type"], (asset, headers["content-type"])
    key = 'edgesent_requests_total{endpoint="/docs-assets",method="GET",status="200"}'
    assert settled(server, key, len(assets)) >= len(assets)


def test_metric_labels_stay_bounded_whatever_the_client_sends(server):
    before = metrics(server)
    for i, method in enumerate(["PROPFIND", "MKCOL", "LOCK", "PURGE", "REPORT"]):
        assert request(server, method, f"/made-up/{i}")[0] == 404
    key = 'edgesent_requests_total{endpoint="other",method="other",status="404"}'
    assert settled(server, key, before.get(key, 0) + 5) == before.get(key, 0) + 5
    assert not [key for key in metrics(server) if "LOCK" in key or "made-up" in key]


def test_metrics_count_requests_errors_and_batches(server):
    before = metrics(server)
    request(server, "POST", "/v1/classify", {"texts": REVIEWS[:3]})
    request(server, "POST", "/v1/classify", {"text": " "})
    request(server, "POST", "/v1/classify", b"{")
    after = metrics(server)

    def delta(key: str) -> float:
        return after.get(key, 0) - before.get(key, 0)

    ok = 'edgesent_requests_total{endpoint="/v1/classify",method="POST",status="200"}'
    bad = 'edgesent_requests_total{endpoint="/v1/classify",method="POST",status="422"}'
    assert (delta(ok), delta(bad)) == (1, 1)
    assert delta('edgesent_errors_total{code="blank_text"}') == 1
    assert delta('edgesent_errors_total{code="invalid_json"}') == 1
    assert delta("edgesent_batch_size_sum") == 3
    count = 'edgesent_request_duration_seconds_count{endpoint="/v1/classify"}'
    assert delta(count) == 3
    inf = 'edgesent_request_duration_seconds_bucket{endpoint="/v1/classify",le="+Inf"}'
    assert after[inf] == after[count]
    buckets = [v for k, v in after.items() if k.startswith("edgesent_batch_size_bucket")]
    assert buckets == sorted(buckets)  # cumulative
    assert after["edgesent_ready"] == 1
    assert after["edgesent_queue_texts"] == 0


class Exploding:
    """The real classifier, except that any model call holding "explode" fails."""

    def __init__(self, inner: Any, always: bool = False) -> None:
        self.inner, self.always, self.manifest = inner, always, inner.manifest

    def predict(self, texts: Any, batch_size: int = 32) -> Any:
        if self.always or (not isinstance(texts, str) and any("explode" in t for t in texts)):
            raise RuntimeError("kaboom")
        return self.inner.predict(texts, batch_size=batch_size)


@contextmanager
def in_process(classifier: Any, settings: ServeSettings, *, ready: bool = True
               ) -> Iterator[int]:
    """``create_app`` served by uvicorn in a thread of this process; yields the port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(classifier, settings), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started or (ready and get_json(port, "/readyz")[0] != 200):
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def post(port: int, payload: Any) -> tuple[int, Any]:
    status, _, data = request(port, "POST", "/v1/classify", payload)
    return status, json.loads(data)


def test_batching_off_gives_the_same_answers(tiny_classifier):
    with in_process(tiny_classifier, ServeSettings(max_batch=1, max_wait_ms=0)) as port:
        results = post(port, {"texts": REVIEWS})[1]["results"]
        single = post(port, {"text": REVIEWS[1]})[1]
        samples = metrics(port)
    for got, review in zip(results, REVIEWS, strict=True):
        assert_same(got, expected(tiny_classifier, review))
    assert_same(single, expected(tiny_classifier, REVIEWS[1]))
    # Off: each request is one model call with its own texts.
    assert (samples["edgesent_batch_size_count"], samples["edgesent_batch_size_sum"]) == (2, 9)


def test_a_model_failure_is_a_500_for_that_request_only(tiny_classifier):
    with in_process(Exploding(tiny_classifier), ServeSettings()) as port:
        failed = post(port, {"texts": ["fine", "explode now"]})
        after = post(port, {"text": REVIEWS[0]})
        samples = metrics(port)
    assert failed == (500, {"error": {"code": "model_error",
                                      "message": "the model failed: RuntimeError"}})
    assert after[0] == 200
    assert_same(after[1], expected(tiny_classifier, REVIEWS[0]))
    assert samples['edgesent_errors_total{code="model_error"}'] == 1


def test_readiness_reports_a_failed_warm_up(tiny_classifier):
    with in_process(Exploding(tiny_classifier, always=True), ServeSettings(),
                    ready=False) as port:
        deadline = time.monotonic() + 30
        while (ready := get_json(port, "/readyz"))[1]["status"] == "starting":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert ready == (503, {"status": "failed", "detail": "RuntimeError: kaboom"})
        assert get_json(port, "/healthz") == (200, {"status": "ok"})


def test_serve_is_wired_into_the_cli_and_imports_nothing_heavy():
    result = CliRunner().invoke(edgesent_main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--host", "--port", "--threads", "--token-budget",
                   "--memory-arena / --no-memory-arena", "--max-batch", "--max-wait-ms",
                   "--max-body-bytes", "--max-texts", "--max-chars", "--log-level"):
        assert option in result.output
    code = ("import sys, edgesent.cli, edgesent.server_cli; "
            "heavy = {'fastapi', 'uvicorn', 'starlette', 'pydantic', 'torch'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, env=subprocess_env())


def test_serve_user_errors_are_one_line(tiny_bundle, tmp_path, monkeypatch):
    runner = CliRunner()
    missing = runner.invoke(edgesent_main, ["serve", "--model", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "no such directory" in missing.output
    assert "Traceback" not in missing.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = runner.invoke(edgesent_main, ["serve", "--model", str(tiny_bundle),
                                              "--port", str(port)])
    assert taken.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in taken.output
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    no_extra = runner.invoke(edgesent_main, ["serve", "--model", str(tiny_bundle)])
    assert no_extra.exit_code == 1
    assert 'pip install "edgesent[serve]"' in no_extra.output


def test_soak_thousands_of_requests_without_one_error(tiny_bundle, tiny_classifier, tmp_path):
    """3,000 requests from 16 keep-alive clients (single texts and lists, short and long,
    batching on) against one server: every answer right, and /metrics counts no error."""
    words = [*REVIEWS, " ".join(REVIEWS) * 3, "ok", "Great!" * 40]
    texts = [f"{words[i % len(words)]} #{i % 97}" for i in range(300)]
    want = {text: expected(tiny_classifier, text) for text in texts}
    clients, per_client = 16, 3000 // 16

    def client(seed: int) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        done = 0
        try:
            for i in range(per_client):
                k = (seed * 131 + i * 7) % len(texts)
                payload = ({"text": texts[k]} if i % 3 else
                           {"texts": [texts[(k + j) % len(texts)] for j in range(1 + i % 8)]})
                conn.request("POST", "/v1/classify", json.dumps(payload),
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                body = json.loads(response.read())
                assert response.status == 200, body
                for got in body.get("results", [body]):
                    assert_same(got, want[got["text"]])
                done += 1
        finally:
            conn.close()
        return done

    log = tmp_path / "server.log"
    with serve(tiny_bundle, log, "--max-batch", "16", "--max-wait-ms", "2") as (port, proc):
        with ThreadPoolExecutor(clients) as pool:
            answered = sum(pool.map(client, range(clients)))
        key = 'edgesent_requests_total{endpoint="/v1/classify",method="POST",status="200"}'
        samples = metrics(port) if settled(port, key, answered) else {}
        assert proc.poll() is None
    assert answered == clients * per_client
    assert samples[key] == answered
    errors = {k: v for k, v in samples.items() if k.startswith("edgesent_errors_total")}
    assert sum(errors.values()) == 0, errors
    classify = [k for k in samples if k.startswith("edgesent_requests_total")
                and 'endpoint="/v1/classify"' in k]
    assert classify == [key]  # no other status for /v1/classify
    assert samples["edgesent_queue_texts"] == 0
    assert samples["edgesent_batch_size_sum"] > answered  # lists: more texts than requests
    assert samples["edgesent_batch_size_count"] < samples["edgesent_batch_size_sum"]  # gathered
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("option", ["--threads", "--token-budget", "--max-batch"])
def test_serve_refuses_counts_below_one(tiny_bundle, option):
    result = CliRunner().invoke(edgesent_main, ["serve", "--model", str(tiny_bundle),
                                                option, "0"])
    assert result.exit_code == 2
    assert option in result.output and "x>=1" in result.output
    assert "Traceback" not in result.output


def test_serve_memory_settings_reach_the_classifier(tiny_bundle, tiny_classifier, tmp_path):
    """A tiny token budget splits every gathered batch into several model calls; answers
    stay those of the classifier. Too many threads are clamped to the CPUs, with a warning."""
    log = tmp_path / "server.log"
    with serve(tiny_bundle, log, "--token-budget", "40", "--no-memory-arena", "--threads",
               "100000", "--log-level", "info") as (port, _):
        results = post(port, {"texts": REVIEWS})[1]["results"]
        started = log.read_text()
    for got, review in zip(results, REVIEWS, strict=True):
        assert_same(got, expected(tiny_classifier, review))
    cpus = available_cpus()
    assert f"{cpus} threads, token budget 40, arena off" in started, started
    assert "threads=100000 is more than" in started, started
    assert "Traceback" not in started


def test_sigterm_drains_the_request_in_flight_then_exits_0(tiny_bundle, tiny_classifier,
                                                          tmp_path):
    """A server of its own, so the test order does not matter.

    The client sends the headers and half of a chunked body; the server gets SIGTERM and
    stops accepting connections; then the client sends the rest. The server must still
    answer it (through the micro-batcher) before it exits, with status 0.
    """
    log = tmp_path / "server.log"
    body = json.dumps({"text": REVIEWS[3]}).encode()
    with (serve(tiny_bundle, log, "--max-batch", "8", "--max-wait-ms", "5") as (port, proc),
          socket.create_connection(("127.0.0.1", port), timeout=30) as sock):
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: test\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"%x\r\n%s\r\n" % (10, body[:10]))
        deadline = time.monotonic() + 30  # wait until the app is handling it
        while metrics(port)["edgesent_requests_in_flight"] < 2:
            assert time.monotonic() < deadline, "the request never reached the app"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        while True:  # shutdown has begun once the listening socket is closed
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "the server kept accepting connections"
            time.sleep(0.02)
        assert proc.poll() is None, "the server exited with a request in flight"
        rest = body[10:]
        sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest))
        response = http.client.HTTPResponse(sock)
        response.begin()
        status, answer = response.status, json.loads(response.read())
        assert proc.wait(timeout=30) == 0, log.read_text()
    assert status == 200
    assert_same(answer, expected(tiny_classifier, REVIEWS[3]))
