"""A mobile app's backend that classifies customer feedback in its own process.

The app embeds ``edgesent.Classifier`` directly: no separate model server. Needs
FastAPI and uvicorn (``pip install "edgesent[serve]"``). Run it:

    python examples/mobile_backend.py --port 8000 --db feedback.db
    python examples/mobile_backend.py --model path/to/bundle

then, from the app (or curl):

    curl -s localhost:8000/feedback -H 'content-type: application/json' \\
         -d '{"user_id": "u-17", "message": "Checkout keeps crashing on my phone"}'
    curl -s localhost:8000/feedback/summary

``POST /feedback`` stores the message with its label and score in SQLite and says
whether someone should follow up; ``GET /feedback/summary`` counts messages per label.
"""

from __future__ import annotations

import argparse
import sqlite3
from contextlib import closing
from datetime import datetime, timezone

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field

from edgesent import Classifier, EdgesentError

FOLLOW_UP_LABEL = "negative"
FOLLOW_UP_CONFIDENCE = 0.8


class Feedback(BaseModel):
    user_id: str = Field(min_length=1, max_length=64)
    message: str = Field(min_length=1, max_length=5000)


class Verdict(BaseModel):
    id: int
    label: str | None
    score: float | None
    follow_up: bool


def build_app(classifier: Classifier, db_path: str) -> FastAPI:
    """The web app; the classifier is loaded once and shared by every request."""
    with closing(sqlite3.connect(db_path)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY, "
                   "user_id TEXT, message TEXT, label TEXT, score REAL, created TEXT)")
    app = FastAPI(title="Feedback backend")

    # Plain `def` endpoints run in FastAPI's thread pool, so classifying (CPU work)
    # never blocks the event loop; Classifier is thread-safe.
    @app.post("/feedback", response_model=Verdict)
    def post_feedback(feedback: Feedback) -> Verdict:
        pred = classifier.predict(feedback.message)
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with closing(sqlite3.connect(db_path)) as db, db:
            row_id = db.execute(
                "INSERT INTO feedback (user_id, message, label, score, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (feedback.user_id, feedback.message, pred.label, pred.score, created),
            ).lastrowid
        follow_up = pred.label == FOLLOW_UP_LABEL and (pred.score or 0) >= FOLLOW_UP_CONFIDENCE
        return Verdict(id=row_id, label=pred.label, score=pred.score, follow_up=follow_up)

    @app.get("/feedback/summary")
    def summary() -> dict[str, int]:
        with closing(sqlite3.connect(db_path)) as db:
            rows = db.execute("SELECT label, COUNT(*) FROM feedback GROUP BY label").fetchall()
        return {str(label): count for label, count in rows}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Feedback backend with edgesent inside.")
    parser.add_argument("--model", default=None, help="bundle directory (default: embedded)")
    parser.add_argument("--db", default="feedback.db", help="SQLite file for the feedback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        classifier = Classifier.load(args.model)
    except EdgesentError as exc:
        raise SystemExit(f"error: {exc}") from None
    app = build_app(classifier, args.db)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
