"""Schemathesis on the OpenAPI schema, auth off and on: no 5xx, every response as documented."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from lightweight_charts_pro_backend import app_production

from .conftest import bearer, make_settings, token

EXAMPLES = 50

OPEN = make_settings(
    enable_auth=False, rate_limit_per_minute=1_000_000, rate_limit_history_per_minute=1_000_000
)
LOCKED = make_settings(
    enable_auth=True, rate_limit_per_minute=1_000_000, rate_limit_history_per_minute=1_000_000
)

open_schema = schemathesis.openapi.from_asgi("/openapi.json", app_production.create_app(OPEN))
locked_schema = schemathesis.openapi.from_asgi("/openapi.json", app_production.create_app(LOCKED))
LOCKED_HEADERS = bearer(token(LOCKED, minutes=60))

# Point rules (time forms, low <= high, ...) are beyond JSON Schema, so a schema-valid body can
# still be refused with 400/422: acceptance of positive data is not checked; everything about the
# responses is.
EXCLUDED = [positive_data_acceptance]

_settings = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


@open_schema.parametrize()
@_settings
def test_auth_off(case: schemathesis.Case) -> None:
    case.call_and_validate(excluded_checks=EXCLUDED)


@locked_schema.parametrize()
@_settings
def test_auth_on(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=LOCKED_HEADERS, excluded_checks=EXCLUDED)
