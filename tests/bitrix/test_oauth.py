from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
import time_machine
from urllib3.exceptions import MaxRetryError, NewConnectionError

from b24app.bitrix import errors, oauth, replies
from tests.bitrix.conftest import reply

TOKEN_URL = "https://oauth.bitrix.info/oauth/token/"
CLIENT_ID = "app.5f3c1b2a9e8d74.12345678"
CLIENT_SECRET = "Zx8q1w2e3r4t5y6u7i8o9p0aSdFgHjKlZxCvBnM"
CODE = "d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9"
REFRESH = "4f9k4jpmg13usmybzuqknt2v9fh0q6rl"
NOW = datetime(2026, 3, 17, 12, 0, tzinfo=UTC)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def query_of(rsps: responses.RequestsMock) -> dict[str, list[str]]:
    return parse_qs(urlsplit(rsps.calls[0].request.url).query)


def exchange() -> replies.TokenSet:
    return oauth.exchange_code(
        token_url=TOKEN_URL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=CODE
    )


def refresh() -> replies.TokenSet:
    return oauth.refresh_tokens(
        token_url=TOKEN_URL,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=REFRESH,
    )


@pytest.mark.parametrize(
    ("server_endpoint", "token_url"),
    [
        ("https://oauth.bitrix.info/rest/", "https://oauth.bitrix.info/oauth/token/"),
        ("https://oauth.bitrix24.tech/rest/", "https://oauth.bitrix24.tech/oauth/token/"),
        ("http://localhost:8101/rest/", "http://localhost:8101/oauth/token/"),
    ],
)
def test_token_url_comes_from_the_server_endpoint(server_endpoint, token_url):
    assert oauth.token_url_for(server_endpoint) == token_url


def test_token_url_needs_an_absolute_endpoint():
    with pytest.raises(ValueError):
        oauth.token_url_for("oauth.bitrix.info/rest/")


@time_machine.travel(NOW, tick=False)
def test_code_exchange_is_a_get_with_the_grant_in_the_query(rsps):
    rsps.get(TOKEN_URL, json=reply("oauth_code_token"))

    tokens = exchange()

    request = rsps.calls[0].request
    assert request.method == "GET"
    assert "Authorization" not in request.headers
    assert query_of(rsps) == {
        "grant_type": ["authorization_code"],
        "code": [CODE],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
    }
    assert tokens.access_token == "s1morf609228iwyjjpvfv6wsvuja4p8u"
    assert tokens.refresh_token == "4f9k4jpmg13usmybzuqknt2v9fh0q6rl"
    assert tokens.expires_at == NOW + timedelta(seconds=3600)
    assert tokens.scope == "crm,entity,im,task"
    assert tokens.member_id == "a223c6b3710f85df22e9377d6c4f7553"
    assert tokens.client_endpoint == "https://portal.bitrix24.com/rest/"
    assert tokens.server_endpoint == "https://oauth.bitrix.info/rest/"
    assert tokens.user_id is None
    assert tokens.status == "F"


@time_machine.travel(NOW, tick=False)
def test_refresh_is_a_get_with_the_refresh_grant(rsps):
    rsps.get(TOKEN_URL, json=reply("oauth_refresh_token"))

    tokens = refresh()

    assert rsps.calls[0].request.method == "GET"
    assert query_of(rsps) == {
        "grant_type": ["refresh_token"],
        "refresh_token": [REFRESH],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
    }
    assert tokens.refresh_token == "3s6lr4kr3cv2od4v853gvrchb875bwxb"
    assert tokens.user_id == 67


def test_expires_at_prefers_the_absolute_expires(rsps):
    rsps.get(TOKEN_URL, json=reply("oauth_refresh_token"))

    tokens = refresh()

    assert tokens.expires_at == datetime.fromtimestamp(1780319382, UTC)
    assert tokens.expires_at.tzinfo is UTC


def test_token_freshness_follows_the_clock(rsps):
    with time_machine.travel(NOW, tick=False) as traveller:
        rsps.get(TOKEN_URL, json=reply("oauth_code_token"))
        tokens = exchange()

        assert tokens.is_fresh(datetime.now(UTC))
        traveller.shift(timedelta(minutes=59, seconds=30))
        assert not tokens.is_fresh(datetime.now(UTC))


def test_token_set_reads_an_event_auth_block_with_text_values():
    auth = {
        "access_token": "abc",
        "refresh_token": "def",
        "expires": "1780319382",
        "expires_in": "3600",
        "scope": "imopenlines,user",
        "domain": "acme.bitrix24.com",
        "member_id": "a223c6b3710f85df22e9377d6c4f7553",
        "user_id": "1",
        "status": "L",
    }

    tokens = replies.TokenSet.from_json(auth)

    assert tokens.user_id == 1
    assert tokens.expires_at == datetime.fromtimestamp(1780319382, UTC)


def test_token_repr_hides_both_tokens(rsps):
    rsps.get(TOKEN_URL, json=reply("oauth_refresh_token"))

    tokens = refresh()

    assert tokens.access_token not in repr(tokens)
    assert tokens.refresh_token not in repr(tokens)


def test_invalid_grant_is_rejected(rsps):
    rsps.get(TOKEN_URL, json=reply("error_400_invalid_grant"), status=400)

    with pytest.raises(errors.Rejected) as caught:
        refresh()

    assert caught.value.code == "invalid_grant"
    assert caught.value.status == 400
    assert not caught.value.portal_fatal


def test_invalid_client_is_rejected_not_auth_expired(rsps):
    rsps.get(TOKEN_URL, json=reply("error_401_invalid_client"), status=401)

    with pytest.raises(errors.Rejected):
        exchange()


def test_payment_required_marks_the_portal(rsps):
    rsps.get(TOKEN_URL, json=reply("error_402_PAYMENT_REQUIRED"), status=402)

    with pytest.raises(errors.Rejected) as caught:
        refresh()

    assert caught.value.portal_fatal


def test_connection_refused_before_sending_is_retry_later(rsps):
    refused = NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    rsps.get(TOKEN_URL, body=requests.ConnectionError(MaxRetryError(None, "/", refused)))  # type: ignore[arg-type]

    with pytest.raises(errors.RetryLater):
        refresh()


def test_timeout_after_sending_is_unknown(rsps):
    rsps.get(TOKEN_URL, body=requests.ReadTimeout("read timed out"))

    with pytest.raises(errors.Unknown):
        refresh()


@pytest.mark.parametrize(
    ("status", "kind"), [(502, errors.Unknown), (404, errors.Rejected), (200, errors.Unknown)]
)
def test_non_json_token_reply_is_classified_by_status(rsps, status, kind):
    rsps.get(TOKEN_URL, body="<html>oops</html>", status=status, content_type="text/html")

    with pytest.raises(kind):
        refresh()


def test_token_reply_without_access_token_is_unknown(rsps):
    rsps.get(TOKEN_URL, json={"expires_in": 3600})

    with pytest.raises(errors.Unknown):
        refresh()


def test_plain_http_token_url_is_refused_without_the_oauthlib_switch(monkeypatch):
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)

    with pytest.raises(ValueError):
        oauth.refresh_tokens(
            token_url="http://localhost:8101/oauth/token/",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh_token=REFRESH,
        )


def test_automatic_refresh_is_off(rsps, monkeypatch):
    seen: list[dict[str, Any]] = []
    real = oauth.OAuth2Session

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(oauth, "OAuth2Session", spy)
    rsps.get(TOKEN_URL, json=reply("oauth_refresh_token"))

    refresh()

    assert seen
    assert seen[0]["auto_refresh_url"] is None
    assert seen[0]["token_updater"] is None


def test_secrets_never_reach_the_logs(rsps, caplog):
    caplog.set_level(logging.DEBUG)
    rsps.get(TOKEN_URL, json=reply("oauth_refresh_token"))
    rsps.get(TOKEN_URL, json=reply("oauth_code_token"))

    refresh()
    exchange()

    text = caplog.text
    assert caplog.records  # requests-oauthlib did log, redacted
    for secret in (
        CLIENT_SECRET,
        CODE,
        REFRESH,
        reply("oauth_refresh_token")["access_token"],
        reply("oauth_refresh_token")["refresh_token"],
        reply("oauth_code_token")["access_token"],
    ):
        assert secret not in text


def test_failure_traceback_does_not_carry_the_secret_url(rsps):
    url = f"{TOKEN_URL}?client_secret={CLIENT_SECRET}"
    rsps.get(TOKEN_URL, body=requests.ReadTimeout(f"Read timed out. (url: {url})"))

    with pytest.raises(errors.Unknown) as caught:
        refresh()

    printed = "".join(traceback.format_exception(caught.value))
    assert CLIENT_SECRET not in printed
