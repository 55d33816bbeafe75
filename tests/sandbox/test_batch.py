"""`batch` semantics (spec §3.4): ≤ 50 commands, halt, result maps, result_time, batch modes."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

pytestmark = pytest.mark.sandbox

SEND = "imopenlines.network.message.add"


def _send_cmd(code, user_id, message="hi"):
    return f"{SEND}?{urlencode({'CODE': code, 'USER_ID': user_id, 'MESSAGE': message})}"


def _batch(sandbox, cmd, halt=0, token=None):
    response = sandbox.call("batch", token=token, json={"halt": halt, "cmd": cmd})
    assert response.status_code == 200, response.text
    return response.json()


def test_batch_reply_has_the_five_maps_and_empty_ones_are_lists(sandbox):
    body = _batch(sandbox, {"me": "profile"})
    result = body["result"]
    assert set(result) == {"result", "result_error", "result_total", "result_next", "result_time"}
    assert result["result"]["me"]["ID"] == "1"
    assert result["result_error"] == []
    assert result["result_total"] == []
    assert result["result_next"] == []
    assert "operating" in body["time"]


def test_result_time_entries_carry_operating(sandbox):
    body = _batch(sandbox, {"a": "profile", "b": "profile", "c": "user.current"})
    times = body["result"]["result_time"]
    assert times["a"]["operating"] == pytest.approx(0.005)
    assert times["b"]["operating"] == pytest.approx(0.010)
    assert times["c"]["operating"] == pytest.approx(0.005)
    assert body["time"]["operating"] == 0  # the outer batch is not counted


def test_list_sub_calls_fill_result_total_and_result_next(sandbox):
    body = _batch(sandbox, {"users": "user.get?start=0", "depts": "department.get"})
    result = body["result"]
    assert result["result_total"]["users"] == 300
    assert result["result_next"]["users"] == 50
    assert "depts" not in result["result_next"]
    assert len(result["result"]["users"]) == 50


def test_more_than_fifty_commands_fail_in_result_error_without_halt(sandbox):
    cmd = {f"k{i}": "profile" for i in range(53)}
    result = _batch(sandbox, cmd)["result"]
    assert len(result["result"]) == 50
    assert set(result["result_error"]) == {"k50", "k51", "k52"}
    assert result["result_error"]["k50"] == {
        "error": "ERROR_BATCH_LENGTH_EXCEEDED",
        "error_description": "Max batch length exceeded",
    }


def test_more_than_fifty_with_halt_reports_only_the_51st(sandbox):
    cmd = {f"k{i}": "profile" for i in range(53)}
    result = _batch(sandbox, cmd, halt=1)["result"]
    assert len(result["result"]) == 50
    assert list(result["result_error"]) == ["k50"]


def test_halt_stops_at_the_first_failed_sub_call(sandbox):
    cmd = {"a": "profile", "b": "no.such.method", "c": "profile"}
    result = _batch(sandbox, cmd, halt=1)["result"]
    assert list(result["result"]) == ["a"]
    assert result["result_error"]["b"]["error"] == "ERROR_METHOD_NOT_FOUND"
    assert "c" not in result["result_time"]


def test_without_halt_every_sub_call_runs(sandbox):
    result = _batch(sandbox, {"a": "profile", "b": "no.such", "c": "profile"}, halt=0)["result"]
    assert set(result["result"]) == {"a", "c"}
    assert set(result["result_error"]) == {"b"}
    assert "b" not in result["result_time"]


def test_halt_string_false_is_truthy_like_php(sandbox):
    token = sandbox.token()
    response = sandbox.http.post(
        sandbox.rest_url("batch"),
        data={"auth": token, "halt": "false", "cmd[a]": "no.such", "cmd[b]": "profile"},
        timeout=5,
    )
    result = response.json()["result"]
    assert result["result"] == []
    assert list(result["result_error"]) == ["a"]


def test_a_list_of_commands_gives_list_results(sandbox):
    result = _batch(sandbox, ["profile", "user.current"])["result"]
    assert isinstance(result["result"], list)
    assert result["result"][0]["ID"] == "1"


def test_message_sends_in_a_batch_and_the_second_to_one_user_hits_the_limit(sandbox):
    token = sandbox.token()
    sandbox.join(token=token)
    cmd = {
        "u3": _send_cmd(sandbox.LINE_CODE, 3),
        "u4": _send_cmd(sandbox.LINE_CODE, 4),
        "u3again": _send_cmd(sandbox.LINE_CODE, 3),
    }
    result = _batch(sandbox, cmd, token=token)["result"]
    assert result["result"] == {"u3": True, "u4": True}
    assert result["result_error"]["u3again"]["error"] == "USER_MESSAGE_LIMIT"
    assert [d["USER_ID"] for d in sandbox.deliveries()] == [3, 4]


def test_sub_call_keyboard_as_bracket_fields_is_accepted(sandbox):
    token = sandbox.token()
    sandbox.join(token=token)
    query = urlencode(
        {
            "CODE": sandbox.LINE_CODE,
            "USER_ID": 5,
            "MESSAGE": "x",
            "KEYBOARD[BUTTONS][0][TEXT]": "Open",
            "KEYBOARD[BUTTONS][0][LINK]": "https://example.com",
        }
    )
    result = _batch(sandbox, {"m": f"{SEND}?{query}"}, token=token)["result"]
    assert result["result"] == {"m": True}
    assert sandbox.deliveries()[0]["KEYBOARD"]["BUTTONS"][0]["LINK"] == "https://example.com"


def test_no_batch_send_refuses_message_sub_calls(sandbox):
    token = sandbox.token()
    sandbox.join(token=token)
    sandbox.control(portal=1, batch_send=False)
    result = _batch(sandbox, {"m": _send_cmd(sandbox.LINE_CODE, 3), "p": "profile"}, token=token)
    assert result["result"]["result_error"]["m"] == {
        "error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
        "error_description": "Method is not allowed for batch usage",
    }
    assert result["result"]["result"]["p"]["ID"] == "1"
    assert sandbox.deliveries() == []
    direct = sandbox.call(SEND, token=token, CODE=sandbox.LINE_CODE, USER_ID=3, MESSAGE="hi")
    assert direct.status_code == 200


def test_nested_batch_is_not_allowed(sandbox):
    result = _batch(sandbox, {"inner": "batch?cmd[a]=profile"})["result"]
    assert result["result_error"]["inner"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"


def test_sub_calls_can_reference_earlier_results(sandbox):
    result = _batch(
        sandbox, {"me": "user.current", "dept": "department.get?ID=$result[me][UF_DEPARTMENT][0]"}
    )["result"]
    assert result["result"]["dept"][0]["ID"] == "1"


def test_sub_calls_check_scope_each(sandbox):
    sandbox.control(portal=1, scope="imopenlines")
    result = _batch(sandbox, {"u": "user.get", "p": "profile"})["result"]
    assert result["result_error"]["u"]["error"] == "insufficient_scope"
    assert "p" in result["result"]
