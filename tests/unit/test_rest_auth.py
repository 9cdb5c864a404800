"""The REST API's bearer-token check: header parsing, which methods need it, and the answers it gives."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from streamjob.worker.jobmaster.rest_auth import bearer_token, check_request, token_middleware
from streamjob.worker.protocol.auth import derive_rest_token

pytestmark = pytest.mark.unit

TOKEN = derive_rest_token("ab" * 32)


@pytest.mark.parametrize(
    "header, token",
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("  Bearer   abc  ", "abc"),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic YWxhZGRpbjpvcGVuc2VzYW1l", None),
        ("Bearer abc def", None),
        ("Bearerabc", None),
        ("abc", None),
    ],
)
def test_bearer_token_parsing(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_reading_is_open_and_everything_else_needs_the_token() -> None:
    for method in ("GET", "HEAD", "OPTIONS", "get"):
        assert check_request(method, None, TOKEN) is None
    for method in ("POST", "PUT", "DELETE", "PATCH", "post"):
        assert check_request(method, None, TOKEN) is not None
        assert check_request(method, None, TOKEN)[0] == 401  # type: ignore[index]
        assert check_request(method, "Basic x", TOKEN)[0] == 401  # type: ignore[index]
        assert check_request(method, f"Bearer {TOKEN[:-1]}", TOKEN)[0] == 403  # type: ignore[index]
        assert check_request(method, f"Bearer {TOKEN}x", TOKEN)[0] == 403  # type: ignore[index]
        assert check_request(method, f"Bearer {TOKEN.upper()}", TOKEN)[0] == 403  # type: ignore[index]
        assert check_request(method, "Bearer \u00e9\u00e9", TOKEN)[0] == 403  # type: ignore[index]
        assert check_request(method, f"Bearer {TOKEN}", TOKEN) is None


def test_an_empty_expected_token_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        token_middleware("")


def _call(method: str, headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str], list[str]]:
    handled: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        handled.append(request.method)
        return web.json_response({"ok": True})

    async def main() -> tuple[int, dict[str, Any], dict[str, str], list[str]]:
        app = web.Application(middlewares=[token_middleware(TOKEN)])
        app.router.add_route("*", "/cancel", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.request(method, f"http://127.0.0.1:{port}/cancel", headers=headers, json={}) as response,
            ):
                return response.status, await response.json(), dict(response.headers), handled
        finally:
            await runner.cleanup()

    return asyncio.run(main())


def test_a_missing_token_is_401_saying_how_to_give_it() -> None:
    status, body, headers, handled = _call("POST", {})
    assert status == 401 and handled == []
    assert headers["WWW-Authenticate"].startswith("Bearer")
    message = body["error"]
    for hint in (
        "Authorization: Bearer",
        "STREAMJOB_REST_TOKEN",
        "--token-file",
        "streamjob run",
        "--rest-token-file",
        "the job's Secret",
    ):
        assert hint in message, hint
    assert body["credential"] == "Authorization: Bearer <REST token>"


def test_a_wrong_token_is_403_and_the_right_one_passes() -> None:
    status, body, _, handled = _call("POST", {"Authorization": f"Bearer {derive_rest_token('cd' * 32)}"})
    assert status == 403 and handled == [] and "not this job's" in body["error"]
    status, body, _, handled = _call("POST", {"Authorization": f"Bearer {TOKEN}"})
    assert (status, body, handled) == (200, {"ok": True}, ["POST"])
    status, _, _, handled = _call("GET", {})
    assert (status, handled) == (200, ["GET"])
