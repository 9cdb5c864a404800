"""Who may change a job through its REST API: the bearer-token check of ``rest.py``'s application.

Reading (``GET``: health, job, checkpoints, savepoint status, metrics) stays open, as monitoring and
the operator's observer need it. Every other method changes the job (cancel, savepoint, checkpoint)
and needs ``Authorization: Bearer <token>``, the token being ``derive_rest_token(job secret)``
(``protocol/auth.py``): a missing or malformed header is 401 with a body saying how to give it, a
wrong token 403. Tokens are compared in constant time. The messages also serve the CLI, which prints
the ``error`` field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from streamjob.worker.protocol.auth import REST_TOKEN_ENV, REST_TOKEN_FILE_ENV, tokens_equal

READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods served without a token; everything else changes the job."""

WHERE_THE_TOKEN_IS = (
    "local mode: `streamjob run` writes it to the file named in its output (streamjob-<job>-<port>.token "
    "under $XDG_RUNTIME_DIR or the temp directory, or --rest-token-file); Kubernetes: it is in the job's "
    "Secret, created by the operator"
)
HOW_TO_SEND = (
    f"send 'Authorization: Bearer <token>'; with the CLI pass --token-file FILE or set {REST_TOKEN_ENV} "
    f"(or {REST_TOKEN_FILE_ENV})"
)
MISSING_TOKEN = f"this call changes the job and needs its REST token: {HOW_TO_SEND} ({WHERE_THE_TOKEN_IS})"
WRONG_TOKEN = (
    "the REST token is not this job's (every `streamjob run` makes a new one; on Kubernetes each job has "
    f"its own): {WHERE_THE_TOKEN_IS}"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None if absent, empty or another scheme."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def check_request(method: str, authorization: str | None, expected: str) -> tuple[int, str] | None:
    """None when the request may proceed, else (HTTP status, message)."""
    if method.upper() in READ_ONLY_METHODS:
        return None
    token = bearer_token(authorization)
    if token is None:
        return 401, MISSING_TOKEN
    if not tokens_equal(token, expected):
        return 403, WRONG_TOKEN
    return None


def token_middleware(expected: str) -> Middleware:
    """An aiohttp middleware refusing mutating requests without ``expected`` as their bearer token."""
    if not expected:
        raise ValueError("the REST token must not be empty")

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = check_request(request.method, request.headers.get("Authorization"), expected)
        if refused is None:
            return await handler(request)
        status, message = refused
        body: dict[str, object] = {"error": message}
        headers = {}
        if status == 401:
            body["credential"] = "Authorization: Bearer <REST token>"
            headers["WWW-Authenticate"] = 'Bearer realm="streamjob"'
        return web.json_response(body, status=status, headers=headers)

    return require_token
