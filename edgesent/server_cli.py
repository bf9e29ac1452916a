"""The ``edgesent serve`` command. Imports only click and the run half at module level.

FastAPI and uvicorn (the ``[serve]`` extra) are imported when the command runs, so the
rest of the CLI works without them. Also runnable alone:
``python -m edgesent.server_cli --model path/to/bundle --port 8080``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import click

from edgesent.runner import DEFAULT_MEMORY_ARENA, DEFAULT_TOKEN_BUDGET

logger = logging.getLogger(__name__)

SERVE_HINT = 'pip install "edgesent[serve]"'
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@click.command("serve")
@click.option("-m", "--model", type=click.Path(path_type=Path), envvar="EDGESENT_MODEL",
              show_envvar=True, metavar="PATH",
              help="Model bundle directory [default: the model shipped with edgesent].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 for every interface.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="ONNX Runtime threads [default: the CPUs this process may use, at most 8; "
                   "more than those CPUs is clamped to them].")
@click.option("--token-budget", type=click.IntRange(min=1), default=DEFAULT_TOKEN_BUDGET,
              show_default=True,
              help="Most padded tokens (texts × longest text) in one model call; bounds "
                   "memory.")
@click.option("--memory-arena/--no-memory-arena", default=DEFAULT_MEMORY_ARENA,
              show_default=True,
              help="Keep freed buffers for the next model call (bounded by --token-budget); "
                   "--no-memory-arena returns them: less memory, about a third of the speed.")
@click.option("--max-batch", type=click.IntRange(min=1), default=32, show_default=True,
              help="Most texts gathered into one classifier call from requests that arrived "
                   "while the model was busy (sorted by length and split under "
                   "--token-budget); 1 turns micro-batching off.")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="How long a batch may wait for more texts when the model is free; 0 runs "
                   "whatever has arrived at once.")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=1 << 20,
              show_default=True, help="Largest request body accepted.")
@click.option("--max-texts", type=click.IntRange(min=1), default=256, show_default=True,
              help="Most texts in one request.")
@click.option("--max-chars", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="Longest text accepted, in characters.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
def serve(model: Path | None, host: str, port: int, threads: int | None, token_budget: int,
          memory_arena: bool, max_batch: int, max_wait_ms: float, max_body_bytes: int,
          max_texts: int, max_chars: int, log_level: str) -> None:
    """Serve the classifier over HTTP (JSON API under /v1, docs at /docs).

    \b
    Example:
      edgesent serve --model my-bundle/ --port 8080
      curl -s localhost:8080/v1/classify -d '{"text": "Arrived broken."}'
    """
    try:
        import uvicorn

        from edgesent.server import ServeSettings, create_app
    except ImportError as exc:
        missing = exc.name or "a dependency"
        raise click.ClickException(
            f"edgesent serve needs FastAPI and uvicorn ({missing} is missing): {SERVE_HINT}"
        ) from None
    from edgesent.classifier import Classifier
    from edgesent.errors import EdgesentError

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        classifier = Classifier.load(model, threads=threads, token_budget=token_budget,
                                     memory_arena=memory_arena)
    except (EdgesentError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    settings = ServeSettings(max_batch=max_batch, max_wait_ms=max_wait_ms,
                             max_body_bytes=max_body_bytes, max_texts=max_texts,
                             max_chars=max_chars)
    sock = _listen(host, port)
    bound = sock.getsockname()[1]
    mode = (f"micro-batching up to {max_batch} texts, waiting up to {max_wait_ms:g} ms"
            if max_batch > 1 else "micro-batching off")
    logger.info("serving %s on http://%s:%d (%s; %d threads, token budget %d, arena %s)",
                classifier.bundle.path, host, bound, mode, classifier.threads,
                classifier.runner.token_budget, "on" if memory_arena else "off")
    config = uvicorn.Config(create_app(classifier, settings), host=host, port=bound,
                            log_level=log_level, lifespan="on")
    server = uvicorn.Server(config)
    with _exit_quietly_after_signals():
        server.run(sockets=[sock])
    if not server.started:
        raise click.ClickException("the server failed to start (see the log above)")


def register_serve(group: click.Group) -> None:
    """Add the ``serve`` command to a click group (``edgesent.cli`` calls this)."""
    group.add_command(serve)


def _listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket here, so a busy port is a one-line error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise click.ClickException(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def _exit_quietly_after_signals() -> Iterator[None]:
    """Exit 0 after a graceful SIGTERM/SIGINT shutdown.

    uvicorn drains in-flight requests, then re-raises the signal it caught against the
    handlers it found; with these no-op handlers in place the command returns normally.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = [signal.SIGINT, signal.SIGTERM]
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    serve()
