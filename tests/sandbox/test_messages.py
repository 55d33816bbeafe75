"""imopenlines.network.join and message.add, the weekly ledger and /_sandbox/deliveries."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import requests

from b24app.sandbox.state import LINE_CODE
from tests.plugins.sandbox import SANDBOX_TEST_USERS

pytestmark = pytest.mark.sandbox

SEND = "imopenlines.network.message.add"
JOIN = "imopenlines.network.join"
WEEK = 7 * 24 * 3600


def _send(sandbox, user_id=3, portal=1, code=None, token=None, **extra):
    params = {"CODE": code or sandbox.LINE_CODE, "USER_ID": user_id, "MESSAGE": "Hello", **extra}
    return sandbox.call(SEND, portal, token=token, **params)


def test_join_returns_a_bot_id_and_the_same_one_again(sandbox):
    first = sandbox.join()
    assert first == sandbox.join()
    assert sandbox.join(code=sandbox.LINE_CODE_2) != first


def test_join_with_a_bad_code_length_is_code_400(sandbox):
    response = sandbox.call(JOIN, CODE="short")
    assert response.status_code == 400
    assert response.json() == {"error": "CODE", "error_description": "You entered an invalid code"}


def test_join_of_an_unknown_line_is_not_found(sandbox):
    response = sandbox.call(JOIN, CODE="f" * 32)
    assert response.status_code == 400
    assert response.json() == {"error": "NOT_FOUND", "error_description": "Line not found"}


def test_join_of_the_inactive_line_is_inactive(sandbox):
    response = sandbox.call(JOIN, CODE=sandbox.INACTIVE_LINE_CODE)
    assert response.status_code == 400
    assert response.json() == {"error": "INACTIVE", "error_description": "Openline is inactive"}


def test_join_accepts_a_lower_case_code_parameter(sandbox):
    response = sandbox.call(JOIN, code=sandbox.LINE_CODE)
    assert response.status_code == 200


def test_send_before_join_is_not_found(sandbox):
    response = _send(sandbox)
    assert response.status_code == 400
    assert response.json()["error"] == "NOT_FOUND"


def test_send_after_join_is_stored_as_a_delivery(sandbox):
    sandbox.join()
    response = _send(sandbox, user_id=4, URL_PREVIEW="N")
    assert response.status_code == 200
    assert response.json()["result"] is True
    (delivery,) = sandbox.deliveries()
    assert delivery["member_id"] == sandbox.member_id(1)
    assert delivery["CODE"] == sandbox.LINE_CODE
    assert delivery["USER_ID"] == 4
    assert delivery["MESSAGE"] == "Hello"
    assert delivery["ATTACH"] is None
    assert delivery["KEYBOARD"] is None
    assert delivery["URL_PREVIEW"] == "N"


def test_deliveries_json_has_exactly_the_documented_keys(sandbox):
    sandbox.join()
    _send(sandbox)
    (delivery,) = sandbox.deliveries()
    assert set(delivery) == {
        "id",
        "member_id",
        "CODE",
        "USER_ID",
        "MESSAGE",
        "ATTACH",
        "KEYBOARD",
        "URL_PREVIEW",
        "delivered_at",
    }
    moment = datetime.fromisoformat(delivery["delivered_at"])
    assert moment.utcoffset() is not None
    assert len(delivery["delivered_at"].split(".")[1]) == len("123456+00:00")


def test_deliveries_filter_by_member_id_and_since(sandbox):
    sandbox.join(1)
    sandbox.join(2)
    _send(sandbox, 3, portal=1)
    first = sandbox.deliveries()[0]
    _send(sandbox, 4, portal=1)
    _send(sandbox, 3, portal=2)
    assert len(sandbox.deliveries()) == 3
    assert [d["USER_ID"] for d in sandbox.deliveries(member_id=sandbox.member_id(2))] == [3]
    later = sandbox.deliveries(since=first["delivered_at"])
    assert [d["USER_ID"] for d in later] == [4, 3]
    assert [d["id"] for d in sandbox.deliveries(after_id=first["id"])] == [2, 3]


def test_unknown_user_is_wrong_request(sandbox):
    sandbox.join()
    response = _send(sandbox, user_id=99999)
    assert response.status_code == 400
    assert response.json() == {"error": "WRONG_REQUEST", "error_description": "Message isn't added"}
    assert sandbox.deliveries() == []


def test_inactive_user_is_wrong_request_and_uses_no_quota(sandbox):
    sandbox.join()
    assert _send(sandbox, user_id=6).json()["error"] == "WRONG_REQUEST"
    assert sandbox.deliveries() == []


# Hand-written WRONG_REQUEST vectors. Spec §5.3 #12: "message creation failed (e.g. user does
# not exist/inactive, bot cannot write) | WRONG_REQUEST | Message isn't added", HTTP 400, checked
# after every other rule. Each vector is a JSON body (the line joined first) and names its line.
_VALID_ATTACH = [{"MESSAGE": "Release [b]2.4[/b]"}]
_VALID_KEYBOARD = {"BUTTONS": [{"TEXT": "Open", "LINK": "https://example.com"}]}
WRONG_REQUEST_VECTORS = [
    # §5.2 USER_ID "cast to int" ... "an unknown user ends in WRONG_REQUEST"
    pytest.param({"USER_ID": "99999"}, False, id="unknown-user-numeric-string"),
    # §5.3 #6 refuses only when "(int)USER_ID is 0": a negative id passes it, and no user has it
    pytest.param({"USER_ID": -3}, False, id="negative-user-id"),
    # §5.2 "Existence of the user is not checked up front": one past the test directory's users
    pytest.param({"USER_ID": SANDBOX_TEST_USERS + 1}, False, id="first-id-past-the-directory"),
    # §5.3 #12 after #9-#11: a valid ATTACH and KEYBOARD do not make an inactive user (6) valid
    pytest.param(
        {"USER_ID": 6, "ATTACH": _VALID_ATTACH, "KEYBOARD": _VALID_KEYBOARD},
        False,
        id="inactive-user-with-attach-and-keyboard",
    ),
    # §5.2 "Keys are case-insensitive (upper-cased by the server)"
    pytest.param(
        {"code": LINE_CODE, "user_id": 99999, "message": "Hello"}, False, id="lower-case-keys"
    ),
    # §5.7 the NFR exemption lifts the weekly limit only; #12 still applies
    pytest.param({"USER_ID": 99999}, True, id="unknown-user-on-an-nfr-portal"),
]


@pytest.mark.parametrize(("params", "nfr"), WRONG_REQUEST_VECTORS)
def test_wrong_request_vectors(sandbox, params, nfr):
    sandbox.join()
    sandbox.control(portal=1, nfr=nfr)
    body = params if "code" in params else {"CODE": LINE_CODE, "MESSAGE": "Hello", **params}

    response = sandbox.call(SEND, json=body)

    assert response.status_code == 400
    assert response.json() == {"error": "WRONG_REQUEST", "error_description": "Message isn't added"}
    assert sandbox.deliveries() == []


# §5.3 "The checks run in this order and stop at the first failure": an unknown recipient (#12)
# is reported only when every earlier check passed.
EARLIER_THAN_WRONG_REQUEST = [
    # §5.3 #2 "CODE missing or length ≠ 32"
    pytest.param({"CODE": "short"}, "CODE", id="code-before-wrong-request"),
    # §5.3 #8 "trimmed MESSAGE empty"
    pytest.param({"MESSAGE": "   "}, "MESSAGE_EMPTY", id="message-empty-before-wrong-request"),
    # §5.3 #10 "ATTACH truthy but unparsable / no valid block"
    pytest.param({"ATTACH": [{"MESSAGE": " "}]}, "ATTACH_ERROR", id="attach-before-wrong-request"),
    # §5.3 #11 and §5.6 "a KEYBOARD sent as a string is not JSON-decoded"
    pytest.param(
        {"KEYBOARD": json.dumps(_VALID_KEYBOARD)},
        "KEYBOARD_ERROR",
        id="keyboard-before-wrong-request",
    ),
]


@pytest.mark.parametrize(("params", "code"), EARLIER_THAN_WRONG_REQUEST)
def test_earlier_checks_win_over_an_unknown_recipient(sandbox, params, code):
    sandbox.join()
    body = {"CODE": LINE_CODE, "USER_ID": 99999, "MESSAGE": "Hello", **params}

    response = sandbox.call(SEND, json=body)

    assert response.status_code == 400
    assert response.json()["error"] == code


def test_weekly_limit_refuses_until_exactly_seven_days_later(sandbox):
    sandbox.join()
    assert _send(sandbox, user_id=3).status_code == 200
    sandbox.advance(WEEK - 1)
    refused = _send(sandbox, user_id=3)  # a new token: the old one expired meanwhile
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "USER_MESSAGE_LIMIT",
        "error_description": "You cant send more than one message per week to each user.",
    }
    sandbox.advance(1)
    assert _send(sandbox, user_id=3).status_code == 200


def test_weekly_limit_is_checked_before_the_message_itself(sandbox):
    sandbox.join()
    _send(sandbox, user_id=3)
    response = sandbox.call(SEND, CODE=sandbox.LINE_CODE, USER_ID=3, MESSAGE="   ")
    assert response.json()["error"] == "USER_MESSAGE_LIMIT"


def test_weekly_limit_is_per_line_and_per_portal(sandbox):
    sandbox.join(1)
    sandbox.join(1, code=sandbox.LINE_CODE_2)
    sandbox.join(2)
    assert _send(sandbox, 3).status_code == 200
    assert _send(sandbox, 3, code=sandbox.LINE_CODE_2).status_code == 200
    assert _send(sandbox, 3, portal=2).status_code == 200
    assert _send(sandbox, 4).status_code == 200
    assert _send(sandbox, 3).status_code == 400


def test_failed_sends_do_not_use_the_quota(sandbox):
    sandbox.join()
    assert _send(sandbox, user_id=3, MESSAGE="").status_code == 400
    assert _send(sandbox, user_id=3).status_code == 200


def test_nfr_mode_has_no_weekly_limit(sandbox):
    sandbox.join()
    sandbox.control(portal=1, nfr=True)
    assert [_send(sandbox, 3).status_code for _ in range(3)] == [200, 200, 200]
    sandbox.control(portal=1, nfr=False)
    assert _send(sandbox, 3).status_code == 400


def test_attach_and_keyboard_as_php_form_fields_are_parsed(sandbox):
    sandbox.join()
    response = sandbox.http.post(
        sandbox.rest_url(SEND),
        data={
            "auth": sandbox.token(),
            "CODE": sandbox.LINE_CODE,
            "USER_ID": "5",
            "MESSAGE": "Release [b]2.4[/b]",
            "ATTACH[BLOCKS][0][MESSAGE]": "Block text",
            "ATTACH[BLOCKS][1][LINK][NAME]": "Changelog",
            "ATTACH[BLOCKS][1][LINK][LINK]": "https://example.com/changelog",
            "KEYBOARD[BUTTONS][0][TEXT]": "Open",
            "KEYBOARD[BUTTONS][0][LINK]": "https://example.com",
        },
        timeout=5,
    )
    assert response.status_code == 200, response.text
    (delivery,) = sandbox.deliveries()
    blocks = delivery["ATTACH"]["BLOCKS"]
    assert blocks[0]["MESSAGE"] == "Block text"
    assert delivery["KEYBOARD"]["BUTTONS"][0]["TEXT"] == "Open"


def test_attach_and_keyboard_in_a_json_body_are_parsed(sandbox):
    sandbox.join()
    body = {
        "CODE": sandbox.LINE_CODE,
        "USER_ID": 5,
        "MESSAGE": "Hi",
        "ATTACH": [{"MESSAGE": "short form"}],
        "KEYBOARD": {"BUTTONS": [{"TEXT": "Go", "LINK": "https://example.com"}]},
    }
    response = sandbox.call(SEND, json=body)
    assert response.status_code == 200, response.text
    (delivery,) = sandbox.deliveries()
    assert delivery["ATTACH"]["BLOCKS"][0]["MESSAGE"] == "short form"


def test_keyboard_as_a_json_string_is_keyboard_error(sandbox):
    sandbox.join()
    keyboard = json.dumps({"BUTTONS": [{"TEXT": "Go", "LINK": "https://example.com"}]})
    response = _send(sandbox, KEYBOARD=keyboard)
    assert response.status_code == 400
    assert response.json()["error"] == "KEYBOARD_ERROR"


def test_inbox_shows_each_delivered_message_rendered(sandbox):
    sandbox.join()
    _send(sandbox, user_id=3, MESSAGE="First [b]bold[/b]")
    sandbox.control(portal=1, nfr=True)
    _send(sandbox, user_id=3, MESSAGE="Second message")
    page = requests.get(f"{sandbox.portal_url()}/_sandbox/inbox/3", timeout=5)
    assert page.status_code == 200
    html = page.text
    assert '<div class="b24-chat">' in html
    assert "<b>bold</b>" in html
    assert html.index("First") < html.index("Second message")  # newest last
    assert "/_sandbox/static/chat.css" in html
