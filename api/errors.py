"""Every 4xx and 5xx answer of the API is ``{"detail": ..., "code": ...}``: ``detail`` for
people, ``code`` for programs. A route that has a more specific code than its status's raises
``ApiError``; any other ``HTTPException`` gets the code of its status."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.responses import JSON
from streams.embedded import Overloaded
from streams.kafka_ingest import IngestUnavailable
from streams.store import StoreUnavailable

# The codes of HTTP answers (refused events have their own, in ``domain.codes``).
STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "overloaded",
    500: "internal_error",
    503: "unavailable",
}
MALFORMED_BODY = "malformed_body"  # the body is not JSON, or not the shape the route takes
STORE_UNAVAILABLE = "store_unavailable"  # 503: the store cannot write now (disk full, database down)
STORE_RETRY_AFTER_SECONDS = 5
FASTAPI_BODY_NOT_JSON = "There was an error parsing the body"  # FastAPI's 400 for such a body


class ApiError(HTTPException):
    """An ``HTTPException`` with a code of its own."""

    def __init__(self, status_code: int, detail: Any, code: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code, detail, headers)
        self.code = code


def code_of(status_code: int) -> str:
    return STATUS_CODES.get(status_code) or ("client_error" if status_code < 500 else "server_error")


# Statuses a route may answer besides those FastAPI documents on its own (200, 422 for its
# parameters), by (method, path); every route that needs a key may also answer 401 and 403,
# and every route with a path parameter 404.
EXTRA_STATUSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/v1/events"): (413, 422, 429, 503),
    ("post", "/v1/scans"): (422, 429, 503),
    ("get", "/v1/trace"): (404,),
    ("post", "/v1/import/{kind}"): (422, 429),
    ("get", "/v1/audit/public-key"): (404,),
    ("get", "/v1/audit/checkpoints/latest"): (404,),
    ("post", "/v1/audit/checkpoints"): (404,),
    ("get", "/v1/audit/proof/inclusion"): (404,),
    ("get", "/v1/audit/proof/consistency"): (404,),
    ("post", "/v1/requisitions/{requisition_id}/approve"): (409,),
    ("post", "/v1/requisitions/{requisition_id}/reject"): (409,),
    ("get", "/v1/kpis"): (503,),
    ("get", "/v1/kpis/{name}"): (503,),
    ("post", "/v1/admin/projections/rebuild"): (409, 503),
    ("post", "/epcis/capture"): (400, 413, 422, 429),
    ("get", "/epcis/events"): (400, 404),
}
# Routes that also answer CSV (``format=csv`` or ``Accept: text/csv``).
CSV_ROUTES = {("get", "/v1/trace"), ("get", "/v1/purchase-orders")}
OPEN_PATHS = {"/healthz"}
ERROR_SCHEMA = {"title": "Error", "type": "object", "required": ["detail", "code"],
                "properties": {"detail": {"description": "For people: what is wrong"},
                               "code": {"type": "string", "description": "For programs: what is wrong"}}}


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Add to an OpenAPI document every error status each route may answer, each with the
    ``{"detail", "code"}`` body, and the CSV form of the routes that give one."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            statuses: set[int] = set(EXTRA_STATUSES.get((method, path), ()))
            if path not in OPEN_PATHS:
                statuses |= {401, 403}
            if "{" in path:
                statuses.add(404)
            if method == "post":  # a write the store cannot take now (store_unavailable)
                statuses.add(503)
            responses = op.setdefault("responses", {})
            for st in sorted(statuses):
                if str(st) not in responses:
                    responses[str(st)] = {"description": code_of(st).replace("_", " "), **error}
            if (method, path) in CSV_ROUTES:
                ok = responses.get("200", {}).setdefault("content", {})
                ok.setdefault("text/csv", {"schema": {"type": "string"}})
    return schema


def install(app: FastAPI) -> None:
    """The handlers that give every error answer its ``code``, and the OpenAPI document that
    lists them."""
    make_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(make_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    async def http_error(request: Request, exc: Exception) -> JSON:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and exc.detail == FASTAPI_BODY_NOT_JSON:
            # as the ingest routes answer a body that is not JSON
            return JSON({"detail": "the body is not JSON", "code": MALFORMED_BODY}, status_code=422)
        code = getattr(exc, "code", None) or code_of(exc.status_code)
        return JSON({"detail": exc.detail, "code": code}, status_code=exc.status_code,
                    headers=getattr(exc, "headers", None))

    async def invalid(request: Request, exc: Exception) -> JSON:
        assert isinstance(exc, RequestValidationError)
        detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        not_json = any(e.get("type") == "json_invalid" for e in detail)
        return JSON({"detail": detail, "code": MALFORMED_BODY if not_json else code_of(422)}, status_code=422)

    async def store_unavailable(request: Request, exc: Exception) -> JSON:
        """Any route whose write the store refused (its disk full, the database down): 503,
        nothing of the request stored; the service stays up and takes it again later."""
        return JSON({"detail": str(exc), "code": STORE_UNAVAILABLE}, status_code=503,
                    headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)})

    async def overloaded(request: Request, exc: Exception) -> JSON:
        """Any route whose events the embedded queue had no room for: 429, nothing taken."""
        assert isinstance(exc, Overloaded)
        return JSON({"detail": str(exc), "code": code_of(429)}, status_code=429,
                    headers={"Retry-After": str(exc.retry_after)})

    async def ingest_unavailable(request: Request, exc: Exception) -> JSON:
        """Any route whose events Kafka did not take (distributed profile): 503."""
        return JSON({"detail": str(exc), "code": code_of(503)}, status_code=503)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StoreUnavailable, store_unavailable)
    app.add_exception_handler(Overloaded, overloaded)
    app.add_exception_handler(IngestUnavailable, ingest_unavailable)


__all__ = ["MALFORMED_BODY", "STATUS_CODES", "STORE_UNAVAILABLE", "ApiError", "code_of", "document", "install"]
