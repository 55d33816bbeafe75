from __future__ import annotations

import json
import pickle

import pytest
import requests
from urllib3.exceptions import (
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from b24app.bitrix import errors
from tests.bitrix.conftest import FIXTURES, error_fixtures, reply

EXPECTED_KIND = {
    "expired_token": errors.AuthExpired,
    "invalid_token": errors.AuthExpired,
    "NO_AUTH_FOUND": errors.AuthExpired,
    "QUERY_LIMIT_EXCEEDED": errors.RetryLater,
    "OPERATION_TIME_LIMIT": errors.RetryLater,
    "CONNECTION_ERROR": errors.RetryLater,
}


@pytest.mark.parametrize("is_write", [False, True])
@pytest.mark.parametrize(("status", "code", "stem"), error_fixtures())
def test_every_stored_error_body_maps_to_one_kind_keeping_its_code(status, code, stem, is_write):
    body = (FIXTURES / f"{stem}.json").read_bytes()

    failure = errors.classify(status, body, is_write=is_write)

    if code in EXPECTED_KIND:
        expected = EXPECTED_KIND[code]
    elif status >= 500:
        expected = errors.Unknown if is_write else errors.RetryLater
    else:
        expected = errors.Rejected
    assert type(failure) is expected
    assert failure.code == code
    assert failure.description == reply(stem)["error_description"]
    assert failure.status == status


def test_query_limit_exceeded_is_retry_later():
    failure = errors.classify(
        503, json.dumps(reply("error_503_QUERY_LIMIT_EXCEEDED")), is_write=True
    )

    assert isinstance(failure, errors.RetryLater)
    assert failure.retry_after is None


def test_operation_time_limit_waits_until_operating_reset_at_when_the_reply_says():
    body = {**reply("error_429_OPERATION_TIME_LIMIT"), "time": {"operating_reset_at": 1_000_060}}

    failure = errors.classify(429, json.dumps(body), is_write=True, now=1_000_000.0)

    assert isinstance(failure, errors.RetryLater)
    assert failure.retry_after == pytest.approx(60.0)


def test_operation_time_limit_without_reset_time_has_no_retry_after():
    failure = errors.classify(
        429, json.dumps(reply("error_429_OPERATION_TIME_LIMIT")), is_write=False
    )

    assert isinstance(failure, errors.RetryLater)
    assert failure.retry_after is None


@pytest.mark.parametrize(
    ("stem", "fatal"),
    [
        ("error_403_PORTAL_DELETED", True),
        ("error_402_PAYMENT_REQUIRED", True),
        ("error_401_APPLICATION_NOT_FOUND", True),
        ("error_400_USER_MESSAGE_LIMIT", False),
        ("error_401_insufficient_scope", False),
        ("error_403_ACCESS_DENIED", False),
        ("error_400_invalid_grant", False),
    ],
)
def test_portal_fatal_marks_only_a_dead_or_unpaid_portal(stem, fatal):
    status = int(stem.split("_")[1])

    failure = errors.classify(status, json.dumps(reply(stem)), is_write=True)

    assert isinstance(failure, errors.Rejected)
    assert failure.portal_fatal is fatal


def test_portal_deleted_is_fatal_even_with_the_older_500_status():
    failure = errors.classify(500, json.dumps(reply("error_403_PORTAL_DELETED")), is_write=True)

    assert isinstance(failure, errors.Rejected)
    assert failure.portal_fatal


def test_older_codes_are_kept_as_sent():
    failure = errors.classify(400, json.dumps(reply("error_400_CODE_ERROR")), is_write=True)
    oversize = errors.classify(400, json.dumps(reply("error_400_KEYBOARD_OVERSIZE")), is_write=True)

    assert isinstance(failure, errors.Rejected)
    assert failure.code == "CODE_ERROR"
    assert isinstance(oversize, errors.Rejected)
    assert oversize.code == "KEYBOARD_OVERSIZE"


def test_error_key_in_a_200_reply_is_still_an_error():
    failure = errors.classify(
        200, json.dumps(reply("error_200_ERROR_PLACEMENT_MAX_COUNT")), is_write=False
    )

    assert isinstance(failure, errors.Rejected)
    assert failure.status == 200


def test_success_envelope_is_not_an_error():
    assert errors.classify(200, json.dumps(reply("message_add_ok")), is_write=True) is None


def test_html_error_page_on_write_is_unknown():
    page = (FIXTURES / "html_502.html").read_bytes()

    failure = errors.classify(502, page, is_write=True)

    assert isinstance(failure, errors.Unknown)
    assert failure.code == "HTTP_502"


def test_html_error_page_on_read_is_retry_later():
    page = (FIXTURES / "html_502.html").read_bytes()

    assert isinstance(errors.classify(502, page, is_write=False), errors.RetryLater)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (301, errors.Rejected),
        (302, errors.Rejected),
        (400, errors.Rejected),
        (401, errors.Rejected),
        (404, errors.Rejected),
        (408, errors.RetryLater),
        (429, errors.RetryLater),
    ],
)
def test_non_json_replies_are_classified_by_status_alone(status, kind):
    failure = errors.classify(status, b"<html>nope</html>", is_write=True)

    assert type(failure) is kind
    assert failure.code == f"HTTP_{status}"


@pytest.mark.parametrize("body", [b"", b"\xff\xfe garbage", "[1, 2]", '"text"', b"null"])
def test_unparsable_success_reply_to_a_write_is_unknown(body):
    assert isinstance(errors.classify(200, body, is_write=True), errors.Unknown)
    assert isinstance(errors.classify(200, body, is_write=False), errors.RetryLater)


def test_json_error_without_description_does_not_crash():
    failure = errors.classify(400, b'{"error": "SOMETHING_NEW"}', is_write=True)

    assert isinstance(failure, errors.Rejected)
    assert failure.description == ""
    assert str(failure) == "SOMETHING_NEW"


def test_unknown_code_with_5xx_on_a_write_is_unknown():
    body = json.dumps({"error": "SOMETHING_NEW", "error_description": "boom"})

    assert isinstance(errors.classify(503, body, is_write=True), errors.Unknown)
    assert isinstance(errors.classify(503, body, is_write=False), errors.RetryLater)


def test_batch_sub_call_codes_have_no_status():
    limited = errors.classify_code("QUERY_LIMIT_EXCEEDED", "", status=None, is_write=True)
    refused = errors.classify_code("USER_MESSAGE_LIMIT", "", status=None, is_write=True)

    assert isinstance(limited, errors.RetryLater)
    assert isinstance(refused, errors.Rejected)
    assert refused.status is None


@pytest.mark.parametrize(
    "failure",
    [
        errors.RetryLater("QUERY_LIMIT_EXCEEDED", "Too many requests", 2.5, 503),
        errors.AuthExpired("expired_token", "expired"),
        errors.Rejected("USER_MESSAGE_LIMIT", "weekly", 400),
        errors.Unknown("timeout", "NETWORK"),
    ],
)
def test_errors_survive_pickling_for_celery(failure):
    copy = pickle.loads(pickle.dumps(failure))

    assert type(copy) is type(failure)
    assert vars(copy) == vars(failure)


def _connection_error(reason: Exception) -> requests.ConnectionError:
    return requests.ConnectionError(MaxRetryError(None, "/rest/x", reason))  # type: ignore[arg-type]


def test_connection_refused_is_retry_later_even_for_a_write():
    refused = _connection_error(NewConnectionError(None, "Connection refused"))  # type: ignore[arg-type]

    assert isinstance(errors.from_transport(refused, is_write=True), errors.RetryLater)


def test_dns_failure_is_retry_later():
    dns = _connection_error(NameResolutionError("portal.bitrix24.com", None, OSError("no")))  # type: ignore[arg-type]

    assert isinstance(errors.from_transport(dns, is_write=True), errors.RetryLater)


def test_connect_timeout_is_retry_later():
    assert isinstance(
        errors.from_transport(requests.ConnectTimeout("slow"), is_write=True), errors.RetryLater
    )


def test_read_timeout_after_sending_is_unknown_for_a_write_and_retry_later_for_a_read():
    timeout = requests.ReadTimeout("read timed out")

    assert isinstance(errors.from_transport(timeout, is_write=True), errors.Unknown)
    assert isinstance(errors.from_transport(timeout, is_write=False), errors.RetryLater)


def test_read_timeout_wrapped_by_urllib3_retry_is_still_after_sending():
    # With Retry(read=0) urllib3 wraps the timeout in MaxRetryError and requests raises a
    # plain ConnectionError, not ReadTimeout.
    wrapped = _connection_error(ReadTimeoutError(None, "/rest/x", "timed out"))  # type: ignore[arg-type]

    assert isinstance(errors.from_transport(wrapped, is_write=True), errors.Unknown)


def test_connection_reset_after_sending_is_unknown_for_a_write():
    reset = requests.ConnectionError(
        ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
    )

    assert isinstance(errors.from_transport(reset, is_write=True), errors.Unknown)
    assert isinstance(errors.from_transport(reset, is_write=False), errors.RetryLater)


def test_transport_error_message_never_repeats_the_url():
    secret_url = "https://oauth.bitrix.info/oauth/token/?client_secret=hunter2"
    exc = requests.ReadTimeout(f"HTTPSConnectionPool: Read timed out. (url: {secret_url})")

    failure = errors.from_transport(exc, is_write=True)

    assert "hunter2" not in str(failure)
