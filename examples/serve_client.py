"""Call a running ``edgesent serve`` with nothing but the standard library.

Start a server, then classify reviews given as arguments or piped in, one per line:

    edgesent serve --port 8080 &                  # or: edgesent serve --model path/to/bundle
    python examples/serve_client.py "Fits perfectly" "Zip broke on day two"
    python examples/serve_client.py --url http://127.0.0.1:8080 < reviews.txt

Prints ``label<TAB>score<TAB>text`` per review. The model is whatever the server was
started with (``edgesent serve --model``), so this client takes a ``--url``, not a model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

MAX_TEXTS = 256  # the server's default --max-texts


def call(url: str, path: str, payload: Any = None, timeout: float = 30.0) -> Any:
    """GET (no payload) or POST JSON; return the decoded JSON answer.

    Raises RuntimeError with the server's error code and message on an HTTP error.
    """
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(url.rstrip("/") + path, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
            detail = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            detail = exc.reason
        raise RuntimeError(f"{path} answered {exc.code} ({detail})") from None


def wait_until_ready(url: str, seconds: float) -> None:
    """Poll ``/readyz`` until the model is warmed up, for scripts that start a server."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if call(url, "/readyz", timeout=2).get("status") == "ready":
                return
        except (OSError, RuntimeError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} is not ready after {seconds:g} s")
        time.sleep(0.1)


def classify(url: str, texts: list[str]) -> list[dict[str, Any]]:
    """Results for ``texts``, in order, sent in requests of at most MAX_TEXTS."""
    results: list[dict[str, Any]] = []
    for start in range(0, len(texts), MAX_TEXTS):
        chunk = texts[start:start + MAX_TEXTS]
        results += call(url, "/v1/classify", {"texts": chunk})["results"]
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Classify reviews with an edgesent server.")
    parser.add_argument("texts", nargs="*", help="reviews (default: read stdin, one per line)")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="server address")
    parser.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                        help="wait up to this long for the server to be ready")
    args = parser.parse_args(argv)
    texts = args.texts or [line.strip() for line in sys.stdin if line.strip()]
    if args.wait:
        wait_until_ready(args.url, args.wait)
    try:
        model = call(args.url, "/v1/model")
        results = classify(args.url, texts)
    except (OSError, RuntimeError) as exc:
        raise SystemExit(f"error: {args.url}: {exc}") from None
    print(f"# model {model.get('name')} labels {model.get('labels')}", file=sys.stderr)
    for result in results:
        print(f"{result['label']}\t{result['score']:.4f}\t{result['text']}")


if __name__ == "__main__":
    main()
