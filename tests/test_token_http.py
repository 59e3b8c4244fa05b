"""How one token request's answer is judged: success, refused credentials, or a failure
that is worth retrying or not. Every shape a token endpoint is known to answer with."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from archibald.auth._token_http import get_info, post_token_form
from archibald.exceptions import InvalidCredentialsError, TokenRefreshError

pytestmark = pytest.mark.anyio

URL = "https://portal.example.com/sharing/rest/generateToken"
INFO = "https://h.example.com/arcgis/rest/info"


def envelope(**error: Any) -> dict[str, Any]:
    return {"error": error}


async def ask(answer: httpx.Response | Exception) -> dict[str, Any]:
    def handle(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        return await post_token_form(
            http,
            URL,
            {"username": "bob", "password": "pw-SECRET"},
            who="user 'bob'",
            secrets=["pw-SECRET"],
            refused_hint="check the password",
        )


@pytest.mark.parametrize(
    ("answer", "kind", "retryable", "text"),
    [
        (httpx.Response(200, json=envelope(code=400, message="Unable to generate token.",
                                           details=["Invalid username or password."])),
         InvalidCredentialsError, False,
         f"{URL} refused the credentials of user 'bob' (error 400: Unable to generate token.; "
         "Invalid username or password.); check the password"),
        (httpx.Response(200, json=envelope(code=403, message="Forbidden")),
         InvalidCredentialsError, False, "(error 403: Forbidden)"),
        (httpx.Response(200, json={"error": "invalid_client", "error_description": "Bad secret"}),
         InvalidCredentialsError, False, "(an error: Bad secret; invalid_client)"),
        (httpx.Response(200, json=envelope(code=429, message="Too many")),
         TokenRefreshError, True,
         f"{URL} answered error 429 to the token request for user 'bob': Too many"),
        (httpx.Response(200, json=envelope(code=500, message="Oops")), TokenRefreshError, True,
         "answered error 500"),
        (httpx.Response(200, json=envelope(code=499, message="Token required")),
         TokenRefreshError, False, "answered error 499 to the token request for user 'bob'"),
        (httpx.Response(200, json=envelope(message="odd")), TokenRefreshError, False,
         "answered an error to the token request for user 'bob': odd"),
        (httpx.Response(200, json=envelope(error="temporarily_unavailable")), TokenRefreshError,
         True, "temporarily_unavailable"),
        (httpx.Response(503, text="Service Unavailable"), TokenRefreshError, True,
         f"{URL} answered HTTP 503 Service Unavailable to the token request for user 'bob': "
         "Service Unavailable"),
        (httpx.Response(503, json=envelope(code=503, message="busy")), TokenRefreshError, True,
         "answered HTTP 503"),
        (httpx.Response(408, text="slow"), TokenRefreshError, True, "HTTP 408"),
        (httpx.Response(502, text="bad gateway"), TokenRefreshError, True, "HTTP 502"),
        (httpx.Response(404, text="Not Found"), TokenRefreshError, False,
         "answered HTTP 404 Not Found to the token request for user 'bob'; check the token URL"),
        (httpx.Response(200, json=[1, 2]), TokenRefreshError, True,
         "with something other than a JSON object (HTTP 200): [1,2]"),
        (httpx.Response(200, text="<html>pw-SECRET</html>"), TokenRefreshError, True,
         "something other than a JSON object (HTTP 200): <html>********</html>"),
        (httpx.ConnectError("refused"), TokenRefreshError, True,
         f"could not reach {URL} for a token for user 'bob': ConnectError"),
        (httpx.ReadTimeout("slow"), TokenRefreshError, True,
         f"the token request for user 'bob' to {URL} timed out (ReadTimeout)"),
    ],
)  # fmt: skip
async def test_each_answer_of_a_token_endpoint_is_judged(
    answer: httpx.Response | Exception, kind: type[Exception], retryable: bool, text: str
) -> None:
    """The exception's class, its retryable flag and its message, for each known answer."""
    with pytest.raises(TokenRefreshError) as info:
        await ask(answer)
    assert kind is type(info.value)
    assert retryable is info.value.retryable
    assert text in str(info.value)
    assert "pw-SECRET" not in str(info.value)


async def test_a_good_answer_is_returned_as_it_is() -> None:
    """A JSON object without an error is the caller's to read."""
    body = {"token": "t", "expires": 1}
    assert body == await ask(httpx.Response(200, json=body))


@pytest.mark.parametrize(
    ("answer", "retryable", "text"),
    [
        (httpx.Response(200, json={"currentVersion": 11.3}), None, ""),
        (httpx.Response(503, text="busy"), True,
         f"could not read {INFO} for signing in (HTTP 503: busy)"),
        (httpx.Response(404, json=envelope(code=404, message="x")), False, "(HTTP 404"),
        (httpx.Response(200, json=envelope(code=500, message="x")), False, "(HTTP 200"),
        (httpx.Response(200, text="<html/>"), True, "(HTTP 200: <html/>)"),
        (httpx.ConnectError("refused"), True,
         f"could not reach {INFO} for signing in: ConnectError"),
        (httpx.ConnectTimeout("slow"), True,
         f"reading {INFO} for signing in timed out (ConnectTimeout)"),
    ],
)  # fmt: skip
async def test_an_info_document_is_read_or_judged(
    answer: httpx.Response | Exception, retryable: bool | None, text: str
) -> None:
    """rest/info: its JSON object, or a TokenRefreshError saying why not (and whether it
    is worth trying again); f=json and an Accept header go with the request."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    url = INFO
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        if retryable is None:
            assert {"currentVersion": 11.3} == await get_info(http, url, who="signing in")
        else:
            with pytest.raises(TokenRefreshError) as info:
                await get_info(http, url, who="signing in")
            assert retryable is info.value.retryable
            assert text in str(info.value)
    assert "json" == seen[0].url.params["f"]
    assert "application/json" == seen[0].headers["accept"]
