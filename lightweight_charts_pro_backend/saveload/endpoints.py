"""`/saveload/1.1/...`: the REST API TradingView's Charting Library calls at ``charts_storage_url``
(with ``charts_storage_api_version: "1.1"``).

Answers are the library's: ``{"status": "ok", ...}``, and on a refusal the HTTP status with
``{"status": "error", "message"}`` (plus this service's ``detail``, ``errorCode``, ``requestId``).
POST bodies are forms, URL-encoded or multipart, as the library and TradingView's sample backend
send them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from email.parser import BytesParser
from email.policy import HTTP
from typing import Annotated, Any, Final
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute

from ..api.body import read_body
from ..api.deps import authorize
from ..api.schemas import WireModel
from ..auth import READ, Principal
from ..errors import ChartsError, InvalidRequest, PayloadTooLarge
from ..request_context import current_request_id
from .service import LayoutTooLarge, SaveLoadService
from .store import Owner

JSON: Final = "application/json"
#: Form fields besides ``content``, and the encoding overhead of a URL-encoded ``content``.
_FORM_SLACK: Final = 64 * 1024
_MAX_FIELDS: Final = 16
#: What the library's save/load adapter sends; a JSON or text body is refused with 415.
FORM_TYPES: Final = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


class SaveLoadRoute(APIRoute):
    """Refusals in the library's shape (it reads ``status`` and ``message``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except ChartsError as exc:
                body = {
                    "status": "error",
                    "message": exc.detail,
                    "detail": exc.detail,
                    "errorCode": exc.error_code,
                    "requestId": current_request_id(),
                }
                return Response(
                    orjson.dumps(body), exc.status_code, headers=exc.headers, media_type=JSON
                )

        return handle


class SaveLoadError(WireModel):
    status: str
    message: str
    detail: str
    error_code: str
    request_id: str | None = None


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": SaveLoadError} for code in (400, 401, 403, 404, 413, 415, 422, 429)
}


def _query(*names: str, required: tuple[str, ...] = ("client", "user")) -> dict[str, Any]:
    return {
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": {"type": "string"},
            }
            for name in names
        ]
    }


def _form(*fields: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {name: {"type": "string"} for name in fields}}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": schema},
                "multipart/form-data": {"schema": schema},
            },
        }
    }


router = APIRouter(
    prefix="/saveload/1.1", tags=["saveload"], route_class=SaveLoadRoute, responses=_ERRORS
)


def get_saveload(request: Request) -> SaveLoadService:
    service: SaveLoadService = request.app.state.saveload
    return service


async def _owner(request: Request) -> Owner:
    caller: Principal = await authorize(request, READ)
    service = get_saveload(request)
    query = request.query_params
    enforce: bool = request.app.state.authenticator.enforce
    return service.owner(caller, query.get("client"), query.get("user"), enforce=enforce)


SaveLoadDep = Annotated[SaveLoadService, Depends(get_saveload)]
OwnerDep = Annotated[Owner, Depends(_owner)]


def ok(**fields: Any) -> Response:
    return Response(orjson.dumps({"status": "ok", **fields}), media_type=JSON)


@router.get("/charts", openapi_extra=_query("client", "user", "chart"))
async def charts(request: Request, service: SaveLoadDep, owner: OwnerDep) -> Response:
    """The user's saved charts, or with ``chart=<id>`` one of them with its content."""
    chart = request.query_params.get("chart")
    if chart is None:
        return ok(data=await service.charts(owner))
    return ok(data=await service.chart(owner, chart))


@router.post(
    "/charts",
    openapi_extra=_query("client", "user", "chart")
    | _form("name", "content", "symbol", "resolution"),
)
async def save_chart(request: Request, service: SaveLoadDep, owner: OwnerDep) -> Response:
    """Form ``name, content, symbol, resolution``: a new chart (answers its ``id``), or with
    ``chart=<id>`` a new content for that one."""
    form = await read_form(request, service.max_layout_bytes)
    chart = request.query_params.get("chart")
    saved = await service.save_chart(owner, form, chart)
    return ok() if chart is not None else ok(id=saved)


@router.delete(
    "/charts", openapi_extra=_query("client", "user", "chart", required=("client", "user", "chart"))
)
async def delete_chart(request: Request, service: SaveLoadDep, owner: OwnerDep) -> Response:
    await service.delete_chart(owner, _required(request, "chart"))
    return ok()


@router.get("/study_templates", openapi_extra=_query("client", "user", "template"))
async def study_templates(request: Request, service: SaveLoadDep, owner: OwnerDep) -> Response:
    name = request.query_params.get("template")
    if name is None:
        names = await service.template_names(owner, "study_template")
        return ok(data=[{"name": n} for n in names])
    return ok(data=await service.template(owner, "study_template", name))


@router.post("/study_templates", openapi_extra=_query("client", "user") | _form("name", "content"))
async def save_study_template(request: Request, service: SaveLoadDep, owner: OwnerDep) -> Response:
    """Form ``name, content``; a template of that name is replaced."""
    form = await read_form(request, service.max_layout_bytes)
    await service.save_template(owner, "study_template", form.get("name"), form.get("content"))
    return ok()


@router.delete(
    "/study_templates",
    openapi_extra=_query("client", "user", "template", required=("client", "user", "template")),
)
async def delete_study_template(
    request: Request, service: SaveLoadDep, owner: OwnerDep
) -> Response:
    await service.delete_template(owner, "study_template", _required(request, "template"))
    return ok()


@router.get(
    "/drawing_templates",
    openapi_extra=_query("client", "user", "tool", "name", required=("client", "user", "tool")),
)
async def drawing_templates(request: Request, service: SaveLoadDep, owner: OwnerDep) -> Response:
    """The names of the user's templates of ``tool``, or with ``name=`` one of them."""
    tool = _tool(request)
    name = request.query_params.get("name")
    if name is None:
        return ok(data=await service.template_names(owner, "drawing_template", tool))
    return ok(data=await service.template(owner, "drawing_template", name, tool))


@router.post(
    "/drawing_templates",
    openapi_extra=_query("client", "user", "tool", "name", required=("client", "user", "tool"))
    | _form("content"),
)
async def save_drawing_template(
    request: Request, service: SaveLoadDep, owner: OwnerDep
) -> Response:
    """``tool`` and ``name`` in the query (or the form), form ``content``."""
    tool = _tool(request)
    form = await read_form(request, service.max_layout_bytes)
    name = request.query_params.get("name", form.get("name"))
    await service.save_template(owner, "drawing_template", name, form.get("content"), tool)
    return ok()


@router.delete(
    "/drawing_templates",
    openapi_extra=_query(
        "client", "user", "tool", "name", required=("client", "user", "tool", "name")
    ),
)
async def delete_drawing_template(
    request: Request, service: SaveLoadDep, owner: OwnerDep
) -> Response:
    tool = _tool(request)
    await service.delete_template(owner, "drawing_template", _required(request, "name"), tool)
    return ok()


def _required(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise InvalidRequest(f"The query parameter {name} is required.")
    return value


def _tool(request: Request) -> str:
    tool = _required(request, "tool")
    if len(tool) > 64:
        raise InvalidRequest(f"tool may have at most 64 characters; got {len(tool)}.")
    return tool


async def read_form(request: Request, max_content_bytes: int) -> dict[str, str]:
    """The fields of a URL-encoded or multipart form body (the first value of each)."""
    try:
        body = await read_body(request, 3 * max_content_bytes + _FORM_SLACK, FORM_TYPES)
    except PayloadTooLarge:
        raise LayoutTooLarge(
            f"The form is larger than a content of {max_content_bytes} bytes can make it "
            "(MAX_LAYOUT_BYTES)."
        ) from None
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        return _multipart(kind, body)
    if kind.startswith("application/x-www-form-urlencoded") or not kind:
        try:
            pairs = parse_qsl(
                body.decode(), keep_blank_values=True, strict_parsing=False,
                max_num_fields=_MAX_FIELDS,
            )  # fmt: skip
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidRequest(f"The form cannot be read: {exc}.") from None
        form: dict[str, str] = {}
        for key, value in pairs:
            form.setdefault(key, value)
        return form
    raise InvalidRequest(
        f"Send the fields as a form (application/x-www-form-urlencoded or multipart/form-data), "
        f"not {kind[:60]!r}."
    )


def _multipart(content_type: str, body: bytes) -> dict[str, str]:
    head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise InvalidRequest("The multipart form cannot be read.")
    form: dict[str, str] = {}
    for part in list(message.iter_parts())[:_MAX_FIELDS]:
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        try:
            form.setdefault(name, payload.decode(part.get_content_charset() or "utf-8"))
        except (UnicodeDecodeError, LookupError):
            raise InvalidRequest(f"The form field {name[:40]!r} is not text.") from None
    return form
