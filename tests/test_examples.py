"""Each example in examples/ run as written, as a subprocess, on the tiny bundle."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from edgesent.server import ServeSettings, create_app

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
REVIEWS = [
    "Great phone, I love the screen.",
    "Awful: it broke after a week, I want a refund",
    'The cable, the box and the "charger" arrived',
    "Excellent quality, would recommend",
    "Poor battery and a waste of money",
]


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), out.get("PYTHONPATH")]))
    return out


def run_example(name: str, *args: str, stdin: str | None = None, check: bool = True
                ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], input=stdin,
                            capture_output=True, text=True, env=env(), timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(url: str, payload: Any = None) -> tuple[int, Any]:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(url: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if http(url)[0] == 200:
                return
        except OSError:
            pass
        assert proc is None or proc.poll() is None, proc.stderr.read() if proc else ""
        assert time.monotonic() < deadline, f"{url} did not come up"
        time.sleep(0.05)


def test_classify_csv_appends_label_and_score(tiny_bundle, tiny_classifier, tmp_path):
    src, dst = tmp_path / "reviews.csv", tmp_path / "labelled.csv"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "review"])
        writer.writerows([[i, text] for i, text in enumerate(REVIEWS)] + [[99, "  "]])
    result = run_example("classify_csv.py", str(src), str(dst), "--column", "review",
                         "--model", str(tiny_bundle))
    assert f"wrote {len(REVIEWS) + 1} rows" in result.stdout
    with open(dst, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["id", "review", "label", "score"]
    assert [r["review"] for r in rows[:-1]] == REVIEWS
    for row, pred in zip(rows, tiny_classifier.predict(REVIEWS), strict=False):
        assert row["label"] == pred.label
        assert float(row["score"]) == pytest.approx(pred.score, abs=1e-4)
    assert (rows[-1]["label"], rows[-1]["score"]) == ("", "")

    missing = run_example("classify_csv.py", str(src), str(dst), "--column", "text",
                          "--model", str(tiny_bundle), check=False)
    assert missing.returncode == 2 and "no column 'text'" in missing.stderr


def test_kiosk_answers_each_piped_line(tiny_bundle, tiny_classifier):
    typed = f"{REVIEWS[0]}\n\n{REVIEWS[1]}\nquit\n{REVIEWS[3]}\n"
    result = run_example("kiosk.py", "--model", str(tiny_bundle), stdin=typed)
    lines = result.stdout.splitlines()
    assert len(lines) == 3  # two answers (blank skipped, nothing after quit), the tally
    for line, text in zip(lines, REVIEWS[:2], strict=False):
        pred = tiny_classifier.predict(text)
        assert line.startswith(f"{pred.label} ({pred.score:.0%} confident) - ")
    labels = sorted(tiny_classifier.predict(REVIEWS[:2]), key=lambda p: p.label)
    assert lines[-1] == (f"Session over: 2 reviews (1 {labels[0].label}, "
                         f"1 {labels[1].label}).")


def test_mobile_backend_classifies_and_stores_feedback(tiny_bundle, tiny_classifier, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "mobile_backend.py"), "--model", str(tiny_bundle),
         "--port", str(port), "--db", str(tmp_path / "feedback.db")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())
    try:
        wait_for(f"{url}/feedback/summary", proc)
        answers = [http(f"{url}/feedback", {"user_id": f"u{i}", "message": text})
                   for i, text in enumerate(REVIEWS)]
        for (status, body), text in zip(answers, REVIEWS, strict=True):
            pred = tiny_classifier.predict(text)
            assert status == 200
            assert (body["label"], body["score"]) == (pred.label, pytest.approx(pred.score))
            assert body["follow_up"] == (pred.label == "negative" and pred.score >= 0.8)
        assert [body["id"] for _, body in answers] == [1, 2, 3, 4, 5]
        status, counts = http(f"{url}/feedback/summary")
        want: dict[str, int] = {}
        for pred in tiny_classifier.predict(REVIEWS):
            want[pred.label] = want.get(pred.label, 0) + 1
        assert (status, counts) == (200, want)
        assert http(f"{url}/feedback", {"user_id": "u9", "message": ""})[0] == 422
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def edgesent_server(classifier: Any) -> Iterator[str]:
    """The real ``edgesent serve`` app under uvicorn, in a thread of this process."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(classifier, ServeSettings()),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_serve_client_prints_the_servers_answers(tiny_classifier):
    with edgesent_server(tiny_classifier) as url:
        by_stdin = run_example("serve_client.py", "--url", url, "--wait", "10",
                               stdin="\n".join(REVIEWS) + "\n\n")
        refused = run_example("serve_client.py", "--url", url, REVIEWS[0], "   ", check=False)
    want = [f"{p.label}\t{p.score:.4f}\t{t}"
            for t, p in zip(REVIEWS, tiny_classifier.predict(REVIEWS), strict=True)]
    assert by_stdin.stdout.splitlines() == want
    assert "# model tiny-test labels ['negative', 'positive']" in by_stdin.stderr
    assert refused.returncode == 1
    assert "answered 422 (blank_text: texts[1] is blank" in refused.stderr


def test_serve_client_reports_an_unreachable_server():
    result = run_example("serve_client.py", "--url", f"http://127.0.0.1:{free_port()}",
                         "hello", check=False)
    assert result.returncode == 1 and result.stderr.startswith("error: http://127.0.0.1:")


def test_batch_job_keeps_the_input_order(tiny_bundle, tiny_classifier, tmp_path):
    lines = [f"{REVIEWS[i % len(REVIEWS)]} #{i}" for i in range(300)]
    lines[17] = ""  # a blank line keeps its place, with an error
    src, dst = tmp_path / "reviews.txt", tmp_path / "out.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_example("batch_job.py", str(src), str(dst), "--model", str(tiny_bundle),
                         "--workers", "2", "--chunk-size", "16")
    assert "classified 300 lines with 2 workers" in result.stderr
    got = [json.loads(line) for line in dst.read_text(encoding="utf-8").splitlines()]
    want = [pred.to_dict() for pred in tiny_classifier.predict(lines)]
    assert len(got) == len(want) == 300
    assert got[17] == {"error": "empty text"}
    for g, w in zip(got, want, strict=True):
        assert g.get("label") == w.get("label")
        assert g.get("scores", {}) == pytest.approx(w.get("scores", {}), rel=1e-6)


def test_a_bad_model_path_is_a_one_line_error(tmp_path):
    result = run_example("kiosk.py", "--model", str(tmp_path / "missing"), stdin="hi\n",
                         check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: bundle ") and "no such directory" in result.stderr
    assert "Traceback" not in result.stderr


def scored_reviews_csv(path: Path) -> list[str]:
    """A CSV of reviews for the engine examples: id, review (one blank), stars."""
    texts = [f"{REVIEWS[i % len(REVIEWS)]} #{i}" for i in range(40)]
    texts[5] = ""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "review", "stars"])
        writer.writerows([i, text, i % 5 + 1] for i, text in enumerate(texts))
    return texts


def assert_scored_parquet(folder: Path, texts: list[str], classifier: Any) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(folder).to_pylist()
    assert list(table[0])[:3] == ["id", "review", "stars"]
    by_id = {int(row["id"]): row for row in table}
    assert sorted(by_id) == list(range(len(texts)))
    for i, pred in enumerate(classifier.predict(texts)):
        row = by_id[i]
        assert (row["label"], row["error"]) == (pred.label, pred.error)
        if pred.ok:
            assert row["score"] == pytest.approx(pred.score, rel=1e-6)
            assert row["p_positive"] == pytest.approx(pred.scores["positive"], rel=1e-6)


@pytest.mark.parametrize("script", ["ray_classify.py", "spark_classify.py"])
def test_engine_examples_score_a_csv(script, tiny_bundle, tiny_classifier, tmp_path):
    src, out = tmp_path / "reviews.csv", tmp_path / "scored"
    texts = scored_reviews_csv(src)
    result = run_example(script, str(src), "--model", str(tiny_bundle), "--output", str(out),
                         "--workers", "2")
    assert f"scored {len(texts)} reviews" in result.stderr
    assert_scored_parquet(out, texts, tiny_classifier)
    again = run_example(script, str(src), "--output", str(out), check=False)
    assert again.returncode == 2 and "already exists" in again.stderr  # before any engine
