"""The REST API, `/api/v1/` (django-ninja): a thin adapter over conversations.channels.api.

Every call carries `Authorization: Bearer <key>` (a key of one of the tenant's `api`
channels); every error is `{"error": {"code", "detail", ...}}` with the widget's error codes.
The OpenAPI schema is at `/api/v1/openapi.json`, its page at `/api/v1/docs` (Swagger UI served
from this server's static files: it works without the internet).
"""

from typing import Any

from channels.db import database_sync_to_async
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from ninja import NinjaAPI, Query, Router, Swagger
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.responses import Status
from ninja.security import HttpBearer

from conversations.api.events import event_stream_response
from conversations.api.schemas import (
    ConsentIn,
    ConsentOut,
    ConversationIn,
    ConversationOut,
    ErrorOut,
    MessageIn,
    MessagePostOut,
    MessagesOut,
)
from conversations.channels.api import (
    MESSAGES_PAGE_DEFAULT,
    MESSAGES_PAGE_MAX,
    ApiClient,
    ApiError,
    api_client_for_key,
    api_consent_decide,
    api_conversation_create,
    api_message_post,
    api_messages,
)
from conversations.channels.api_stream import api_stream_open


class ApiKeyBearer(HttpBearer):
    """`Authorization: Bearer sbk_...`: the key's tenant and channel, or 401."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiClient | None:
        return api_client_for_key(token)


api = NinjaAPI(
    title="Supportbot API",
    version="1",
    description="Conversations with the tenant's assistant (and its agents) for integrations.",
    urls_namespace="api-v1",
    auth=ApiKeyBearer(),
    docs=Swagger(settings={"persistAuthorization": False}),
    docs_url="/docs",
    openapi_url="/openapi.json",
)
router = Router(tags=["conversations"])

ERRORS: dict[int | str, Any] = {400: ErrorOut, 401: ErrorOut, 404: ErrorOut}


def _client(request: HttpRequest) -> ApiClient:
    client = request.auth  # type: ignore[attr-defined]
    assert isinstance(client, ApiClient)
    return client


@router.post(
    "/conversations", response={201: ConversationOut, **ERRORS, 409: ErrorOut}, exclude_unset=True
)
def conversation_create(request: HttpRequest, body: ConversationIn) -> Status[dict[str, Any]]:
    """Start a conversation for a person (yours by `external_user_id`, or anonymous)."""
    new = api_conversation_create(_client(request), **body.dict())
    conversation = new.conversation
    return Status(
        201,
        {
            "id": conversation.pk,
            "status": conversation.status,
            "created_at": conversation.created_at,
            "consent": new.consent,
        },
    )


@router.post(
    "/conversations/{conversation_id}/messages",
    response={202: MessagePostOut, **ERRORS, 409: ErrorOut, 429: ErrorOut},
    exclude_unset=True,
)
def message_post(
    request: HttpRequest, conversation_id: str, body: MessageIn
) -> Status[dict[str, Any]]:
    """Post the person's message; the reply arrives on the event stream (or by polling)."""
    posted = api_message_post(
        _client(request),
        conversation_id=conversation_id,
        client_id=body.client_id,
        text=body.text,
    )
    return Status(202, {"message": posted.message, "created": posted.created})


@router.get(
    "/conversations/{conversation_id}/messages",
    response={200: MessagesOut, **ERRORS},
    exclude_unset=True,
)
def messages_list(
    request: HttpRequest,
    conversation_id: str,
    after_seq: int = Query(0, ge=0),
    limit: int = Query(MESSAGES_PAGE_DEFAULT, ge=1, le=MESSAGES_PAGE_MAX),
) -> dict[str, Any]:
    """The messages after `after_seq`, oldest first."""
    page = api_messages(
        _client(request), conversation_id=conversation_id, after_seq=after_seq, limit=limit
    )
    return {"messages": page.messages, "has_more": page.has_more}


@router.post(
    "/conversations/{conversation_id}/consent", response={200: ConsentOut, **ERRORS, 409: ErrorOut}
)
def consent_decide(request: HttpRequest, conversation_id: str, body: ConsentIn) -> dict[str, Any]:
    """Record the person's decision on the tenant's consent text (you speak for them)."""
    return api_consent_decide(
        _client(request),
        conversation_id=conversation_id,
        decision=body.decision,
        version=body.version,
    )


_EVENTS_DOC = (
    "Server-Sent Events: the widget's frames (`message`, `reply.start`, `reply.delta`, "
    "`conversation.updated`, `error`, `erased`) as `event:` and JSON `data:`. Reconnect with "
    "`Last-Event-ID` to resume with nothing lost or repeated; `after_seq` starts after a "
    "message you already have. A `: keep-alive` comment comes every 15 seconds."
)


@router.get(
    "/conversations/{conversation_id}/events",
    response=ERRORS,
    openapi_extra={
        "responses": {
            "200": {
                "description": _EVENTS_DOC,
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        }
    },
)
async def conversation_events(
    request: HttpRequest,
    conversation_id: str,
    after_seq: int | None = Query(None, ge=0),
) -> HttpResponseBase:
    """The conversation's live events."""
    conversation_pk, stream = await database_sync_to_async(api_stream_open)(
        _client(request),
        conversation_id=conversation_id,
        last_event_id=request.headers.get("Last-Event-ID"),
        after_seq=after_seq,
    )
    return event_stream_response(conversation_pk, stream)


api.add_router("/", router)


# --- errors: one shape, the widget's codes ----------------------------------------------------


def _error(status: int, code: str, detail: str, **extra: Any) -> JsonResponse:
    return JsonResponse(ApiError(status, code, detail, **extra).body, status=status)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    response = JsonResponse(exc.body, status=exc.status)
    if "retry_after" in exc.extra:
        response["Retry-After"] = str(exc.extra["retry_after"])
    return response


@api.exception_handler(AuthenticationError)
def _unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = _error(401, "unauthorized", "A valid API key is required (Authorization: Bearer).")
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    problems = []
    for error in exc.errors[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body",))
        problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else error["msg"])
    return _error(400, "bad_request", "; ".join(problems) or "Invalid request.")


@api.exception_handler(Http404)
def _missing(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(404, "not_found", "Not found.")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    """Ninja's own refusals (a body that is not JSON: 400)."""
    code = {401: "unauthorized", 404: "not_found", 429: "rate_limited"}.get(
        exc.status_code, "bad_request"
    )
    detail = "The body must be JSON." if exc.status_code == 400 else str(exc.message)
    return _error(exc.status_code, code, detail)
