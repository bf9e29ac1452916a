"""API fuzzing of `edgesent serve` from its own OpenAPI schema, with schemathesis.

Schemathesis reads ``/openapi.json`` from the real app (in process, lifespan started, the
tiny bundle's real ONNX model behind it) and sends requests generated from it: valid
bodies, and bodies that break the schema on purpose (wrong types, missing and extra
fields, arbitrary Unicode). Every answer must be a declared status code with a body that
matches the schema, never a 5xx, and a body that breaks the schema must get a 4xx.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from edgesent.server import ServeSettings, create_app  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def api_schema(tiny_bundle: Path):
    from edgesent.classifier import Classifier

    app = create_app(Classifier.load(tiny_bundle, threads=1),
                     ServeSettings(max_texts=16, max_chars=2000, max_body_bytes=1 << 16))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_classify_answers_are_declared_and_never_a_server_error(api_schema, mode):
    """Bodies that fit the schema (``positive``) and bodies that break it (``negative``)."""
    operation = api_schema["/v1/classify"]["POST"]
    strategy = operation.as_strategy(generation_mode=GenerationMode(mode))

    @given(case=strategy)
    @FUZZ
    def check(case) -> None:
        case.call_and_validate(checks=[*CHECKS, negative_data_rejection])

    check()


def test_every_operation_in_the_schema_is_fuzzed(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {"POST /v1/classify", "GET /v1/model", "GET /healthz", "GET /readyz",
            "GET /metrics"} <= labels
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=5, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            case.call_and_validate(checks=CHECKS)

        check()
