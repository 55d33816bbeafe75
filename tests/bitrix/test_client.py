from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

import pytest
import requests
import responses
from hypothesis import given, settings
from hypothesis import strategies as st

from b24app.bitrix import client, errors, replies
from tests.bitrix.conftest import ENDPOINT, TOKEN, reply

CODE = "ab515f5d85a8b844d484f6ea75a2e494"


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def sent(rsps: responses.RequestsMock, index: int = -1) -> dict[str, Any]:
    body = rsps.calls[index].request.body
    assert body is not None
    return json.loads(body)


def stub(rsps: responses.RequestsMock, method: str, name: str, status: int = 200) -> None:
    rsps.post(f"{ENDPOINT}{method}", json=reply(name), status=status)


# --- transport ---------------------------------------------------------------------------


def test_token_never_in_url_or_headers(rsps, conn):
    stub(rsps, "imopenlines.network.message.add", "message_add_ok")

    client.network_message_add(conn, code=CODE, user_id=7, message="Hello")

    request = rsps.calls[0].request
    assert TOKEN not in request.url
    assert all(TOKEN not in str(value) for value in request.headers.values())
    assert sent(rsps)["auth"] == TOKEN


def test_call_posts_json_to_the_method_url(rsps, conn):
    stub(rsps, "profile", "profile")

    client.profile(conn)

    request = rsps.calls[0].request
    assert request.method == "POST"
    assert request.url == "https://portal.bitrix24.com/rest/profile"
    assert request.headers["Content-Type"].startswith("application/json")


def test_session_has_default_timeout_user_agent_and_connect_only_retries(rsps, conn):
    stub(rsps, "profile", "profile")
    session = client.make_session()

    client.profile(conn, session=session)

    call = rsps.calls[0]
    assert call.request.req_kwargs["timeout"] == (5.0, 30.0)
    assert call.request.headers["User-Agent"].startswith("b24app/")
    retry = session.get_adapter(ENDPOINT).max_retries
    assert (retry.connect, retry.read, retry.status, retry.other) == (2, 0, 0, 0)
    assert retry.allowed_methods is None


def test_default_session_is_shared_within_a_thread_not_across():
    mine = client.default_session()
    theirs: list[requests.Session] = []
    thread = threading.Thread(target=lambda: theirs.append(client.default_session()))
    thread.start()
    thread.join()

    assert client.default_session() is mine
    assert theirs[0] is not mine


def test_bad_utf8_inside_a_success_reply_does_not_crash(rsps, conn):
    rsps.post(
        f"{ENDPOINT}profile",
        body=b'{"result": {"ID": "1", "NAME": "\xff"}}',
        content_type="application/json",
    )

    assert client.profile(conn).id == 1


def test_connection_repr_hides_the_token(conn):
    assert TOKEN not in repr(conn)


@pytest.mark.parametrize("method", ["../admin", "user.get?x=1", "", "a b"])
def test_bad_method_names_are_refused_before_sending(conn, method):
    with pytest.raises(ValueError):
        client.call(conn, method)


def test_redirect_is_not_followed(rsps, conn):
    rsps.post(
        f"{ENDPOINT}profile",
        status=302,
        headers={"Location": "https://new.bitrix24.com/rest/profile"},
    )

    with pytest.raises(errors.Rejected) as caught:
        client.profile(conn)

    assert caught.value.code == "HTTP_302"
    assert len(rsps.calls) == 1


def test_error_key_with_http_200_raises(rsps, conn):
    stub(rsps, "profile", "error_200_ERROR_PLACEMENT_MAX_COUNT")

    with pytest.raises(errors.Rejected):
        client.profile(conn)


def test_expired_token_raises_auth_expired(rsps, conn):
    stub(rsps, "profile", "error_401_expired_token", status=401)

    with pytest.raises(errors.AuthExpired):
        client.profile(conn)


def test_reply_without_result_to_a_write_is_unknown(rsps, conn):
    rsps.post(f"{ENDPOINT}imopenlines.network.message.add", json={"time": {}})

    with pytest.raises(errors.Unknown):
        client.network_message_add(conn, code=CODE, user_id=7, message="Hi")


def test_html_error_page_on_message_send_is_unknown(rsps, conn):
    rsps.post(
        f"{ENDPOINT}imopenlines.network.message.add",
        body="<html><h1>502 Bad Gateway</h1></html>",
        status=502,
        content_type="text/html",
    )

    with pytest.raises(errors.Unknown):
        client.network_message_add(conn, code=CODE, user_id=7, message="Hi")


def test_html_error_page_on_a_read_is_retry_later(rsps, conn):
    rsps.post(f"{ENDPOINT}user.get", body="<html>oops</html>", status=504)

    with pytest.raises(errors.RetryLater):
        client.user_get(conn)


def test_read_timeout_on_message_send_is_unknown(rsps, conn):
    rsps.post(f"{ENDPOINT}imopenlines.network.message.add", body=requests.ReadTimeout("slow"))

    with pytest.raises(errors.Unknown):
        client.network_message_add(conn, code=CODE, user_id=7, message="Hi")


def test_connect_timeout_on_message_send_is_retry_later(rsps, conn):
    rsps.post(f"{ENDPOINT}imopenlines.network.message.add", body=requests.ConnectTimeout("x"))

    with pytest.raises(errors.RetryLater):
        client.network_message_add(conn, code=CODE, user_id=7, message="Hi")


class _Server:
    """A loopback TCP server that reads one request and then misbehaves."""

    def __init__(self, behaviour: str) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.requests = 0
        self.behaviour = behaviour
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/rest/"

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests += 1
                if self.behaviour == "hang":
                    self.stop.wait(1.0)
                # "reset": close without answering.

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=3)
        self.sock.close()


@pytest.mark.parametrize("behaviour", ["reset", "hang"])
def test_post_that_reached_bitrix_is_sent_once_and_is_unknown(behaviour):
    server = _Server(behaviour)
    try:
        conn = client.Connection(endpoint=server.endpoint, access_token=TOKEN)
        session = client.make_session(read_timeout=0.3)

        with pytest.raises(errors.Unknown):
            client.network_message_add(conn, code=CODE, user_id=7, message="Hi", session=session)
    finally:
        server.close()
    assert server.requests == 1


def test_refused_connection_is_retry_later():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    conn = client.Connection(endpoint=f"http://127.0.0.1:{port}/rest/", access_token=TOKEN)

    with pytest.raises(errors.RetryLater):
        client.network_message_add(
            conn, code=CODE, user_id=7, message="Hi", session=client.make_session()
        )


# --- one function per method -------------------------------------------------------------


def test_app_info_parses_install_state(rsps, conn):
    stub(rsps, "app.info", "app_info")

    info = client.app_info(conn)

    assert info == replies.AppInfo(
        id=37,
        code="local.b24app.sandbox",
        version="1",
        status="L",
        installed=True,
        payment_expired=False,
        language_id="en",
        license="en_project",
    )


def test_profile_parses_string_id_and_admin_flag(rsps, conn):
    stub(rsps, "profile", "profile")

    me = client.profile(conn)

    assert (me.id, me.admin, me.name, me.time_zone) == (1, True, "Anna", "Europe/Berlin")


def test_user_current_parses_departments(rsps, conn):
    stub(rsps, "user.current", "user_current")

    me = client.user_current(conn)

    assert me.id == 7
    assert me.departments == (1, 3)
    assert me.full_name == "Ivan Manager"


def test_user_get_returns_a_typed_page(rsps, conn):
    stub(rsps, "user.get", "user_get_page1")

    page = client.user_get(conn, filter={"ACTIVE": True}, sort="ID", order="ASC")

    assert [u.id for u in page.items] == [1, 7]
    assert page.items[1].active is True  # "Y"
    assert page.items[1].departments == (3,)  # "3"
    assert (page.total, page.next) == (51, 50)
    assert sent(rsps) == {
        "start": 0,
        "FILTER": {"ACTIVE": True},
        "sort": "ID",
        "order": "ASC",
        "auth": TOKEN,
    }


def test_iter_pages_follows_next(rsps, conn):
    stub(rsps, "user.get", "user_get_page1")
    stub(rsps, "user.get", "user_get_page2")

    users = list(client.iter_pages(client.user_get, conn, filter={"ACTIVE": True}))

    assert [u.id for u in users] == [1, 7, 9]
    assert users[2].active is False
    assert [sent(rsps, i)["start"] for i in range(2)] == [0, 50]


def test_iter_pages_stops_when_next_does_not_advance(conn):
    calls = []

    def fake(conn: client.Connection, *, start: int) -> replies.Page[int]:
        calls.append(start)
        return replies.Page(items=(start,), total=None, next=start)

    assert list(client.iter_pages(fake, conn, start=10)) == [10]
    assert calls == [10]


def test_user_search_sends_find_in_filter(rsps, conn):
    stub(rsps, "user.search", "user_search")

    page = client.user_search(conn, find="John", start=50)

    assert page.items[0].name == "John"
    assert sent(rsps)["FILTER"] == {"FIND": "John"}
    assert sent(rsps)["start"] == 50


def test_department_get_parses_root_without_parent(rsps, conn):
    stub(rsps, "department.get", "department_get")

    page = client.department_get(conn, PARENT=1)

    assert page.items[0] == replies.Department(id=1, name="Acme", parent=None, sort=500)
    assert page.items[1].parent == 1
    assert page.items[2].sort == 100
    assert sent(rsps)["PARENT"] == 1


def test_event_bind_returns_true_when_newly_bound(rsps, conn):
    stub(rsps, "event.bind", "event_bind_ok")

    assert client.event_bind(conn, event="ONAPPUNINSTALL", handler="https://app/h/") is True
    assert sent(rsps)["event"] == "ONAPPUNINSTALL"
    assert sent(rsps)["handler"] == "https://app/h/"


def test_handler_already_exists_counts_as_bound(rsps, conn):
    stub(rsps, "event.bind", "error_400_ERROR_HANDLER_ALREADY_EXIST", status=400)

    assert client.event_bind(conn, event="ONAPPUNINSTALL", handler="https://app/h/") is False


def test_other_event_bind_errors_still_raise(rsps, conn):
    stub(rsps, "event.bind", "error_403_ACCESS_DENIED", status=403)

    with pytest.raises(errors.Rejected):
        client.event_bind(conn, event="ONAPPUNINSTALL", handler="https://app/h/")


def test_event_get_lists_handlers(rsps, conn):
    stub(rsps, "event.get", "event_get")

    handlers = client.event_get(conn)

    assert handlers[1] == replies.EventHandler(
        event="ONAPPUPDATE",
        handler="https://app.example.com/b24/events/",
        auth_type=15,
        offline=False,
    )


def test_event_unbind_returns_count(rsps, conn):
    stub(rsps, "event.unbind", "event_unbind")

    assert client.event_unbind(conn, event="ONAPPUPDATE", handler="https://app/h/") == 1


def test_network_join_returns_bot_id(rsps, conn):
    stub(rsps, "imopenlines.network.join", "network_join")

    assert client.network_join(conn, code=CODE) == 113
    assert sent(rsps)["CODE"] == CODE


def test_network_join_of_inactive_line_is_rejected(rsps, conn):
    stub(rsps, "imopenlines.network.join", "error_400_INACTIVE", status=400)

    with pytest.raises(errors.Rejected) as caught:
        client.network_join(conn, code=CODE)

    assert caught.value.code == "INACTIVE"


def test_message_add_sends_only_given_fields(rsps, conn):
    stub(rsps, "imopenlines.network.message.add", "message_add_ok")

    result = client.network_message_add(conn, code=CODE, user_id=7, message="Hi [b]there[/b]")

    assert sent(rsps) == {
        "CODE": CODE,
        "USER_ID": 7,
        "MESSAGE": "Hi [b]there[/b]",
        "URL_PREVIEW": "Y",
        "auth": TOKEN,
    }
    assert result.time is not None
    assert result.time.operating == pytest.approx(0.17312097549438477)
    assert result.time.operating_reset_at == 1773741387


def test_message_add_sends_attach_keyboard_and_preview_off(rsps, conn):
    stub(rsps, "imopenlines.network.message.add", "message_add_ok")
    attach = {"BLOCKS": [{"MESSAGE": "Release 2.4"}]}
    keyboard = {"BUTTONS": [{"TEXT": "Open", "LINK": "https://example.com"}]}

    client.network_message_add(
        conn,
        code=CODE,
        user_id=7,
        message="Hi",
        attach=attach,
        keyboard=keyboard,
        url_preview=False,
        bot_id=113,
    )

    body = sent(rsps)
    assert body["ATTACH"] == attach
    assert body["KEYBOARD"] == keyboard
    assert body["URL_PREVIEW"] == "N"
    assert body["BOT_ID"] == 113


def test_keyboard_as_json_string_is_refused_before_sending(conn):
    with pytest.raises(TypeError):
        client.network_message_add(
            conn,
            code=CODE,
            user_id=7,
            message="Hi",
            keyboard='{"BUTTONS": []}',  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    ("name", "status", "kind"),
    [
        ("error_400_USER_MESSAGE_LIMIT", 400, errors.Rejected),
        ("error_400_ATTACH_OVERSIZE", 400, errors.Rejected),
        ("error_503_QUERY_LIMIT_EXCEEDED", 503, errors.RetryLater),
        ("error_429_OPERATION_TIME_LIMIT", 429, errors.RetryLater),
        ("error_500_INTERNAL_SERVER_ERROR", 500, errors.Unknown),
        ("error_403_PORTAL_DELETED", 403, errors.Rejected),
    ],
)
def test_message_add_failures_map_to_the_four_kinds(rsps, conn, name, status, kind):
    stub(rsps, "imopenlines.network.message.add", name, status=status)

    with pytest.raises(kind):
        client.network_message_add(conn, code=CODE, user_id=7, message="Hi")


# --- batch -------------------------------------------------------------------------------


def message_commands(n: int) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        f"m{i}": client.network_message_add_command(code=CODE, user_id=i + 1, message="Hi")
        for i in range(n)
    }


def test_batch_surplus_rejected(rsps, conn):
    with pytest.raises(ValueError):
        client.batch(conn, message_commands(51))

    assert len(rsps.calls) == 0


def test_batch_of_fifty_is_one_request(rsps, conn):
    rsps.post(f"{ENDPOINT}batch", json={"result": {"result": {}, "result_error": []}})

    client.batch(conn, message_commands(50), is_write=True)

    assert len(rsps.calls) == 1
    assert len(sent(rsps)["cmd"]) == 50


def test_batch_encodes_sub_calls_as_method_and_query(rsps, conn):
    stub(rsps, "batch", "batch_mixed")
    commands = {
        "anna": client.network_message_add_command(
            code=CODE,
            user_id=1,
            message="Tom & Jerry = 100% #1",
            keyboard={"BUTTONS": [{"TEXT": "Open", "LINK": "https://example.com/?a=1&b=2"}]},
            url_preview=False,
        ),
        "info": ("app.info", {}),
    }

    client.batch(conn, commands, halt=True, is_write=True)

    body = sent(rsps)
    assert body["halt"] == 1
    assert body["auth"] == TOKEN
    assert body["cmd"]["info"] == "app.info"
    method, _, query = body["cmd"]["anna"].partition("?")
    assert method == "imopenlines.network.message.add"
    assert "KEYBOARD[BUTTONS][0][TEXT]=Open" in query
    assert "KEYBOARD[BUTTONS][0][LINK]=https%3A%2F%2Fexample.com%2F%3Fa%3D1%26b%3D2" in query
    assert "MESSAGE=Tom%20%26%20Jerry%20%3D%20100%25%20%231" in query
    assert "URL_PREVIEW=N" in query
    assert parse_str(query)["KEYBOARD"] == {
        "BUTTONS": {"0": {"TEXT": "Open", "LINK": "https://example.com/?a=1&b=2"}}
    }


def test_batch_halt_off_is_sent_as_zero(rsps, conn):
    stub(rsps, "batch", "batch_mixed")

    client.batch(conn, {"info": ("app.info", {})})

    assert sent(rsps)["halt"] == 0


def test_batch_splits_results_and_classified_errors(rsps, conn):
    stub(rsps, "batch", "batch_mixed")

    result = client.batch(conn, message_commands(5), is_write=True)

    assert result.results == {"anna": True, "ivan": True}
    assert set(result.errors) == {"olga", "petr", "sergey"}
    assert isinstance(result.errors["olga"], errors.Rejected)
    assert result.errors["olga"].code == "USER_MESSAGE_LIMIT"
    assert isinstance(result.errors["petr"], errors.RetryLater)
    assert isinstance(result.errors["sergey"], errors.Rejected)
    assert result.errors["sergey"].status is None
    assert result.times["anna"].duration == pytest.approx(0.2)
    assert result.times["anna"].operating is None
    assert result.time is not None
    assert result.totals == {}
    assert result.nexts == {}


def test_batch_empty_maps_arrive_as_lists(rsps, conn):
    stub(rsps, "batch", "batch_all_failed")

    result = client.batch(conn, message_commands(1), is_write=True)

    assert result.results == {}
    assert result.times == {}
    assert result.errors["a"].code == "NOT_FOUND"


def test_batch_with_numeric_keys_arriving_as_a_list(rsps, conn):
    stub(rsps, "batch", "batch_list_keys")

    result = client.batch(conn, {"0": ("user.get", {"ID": 1}), "1": ("user.get", {"ID": 2})})

    assert result.results == {"0": {"ID": "1"}, "1": {"ID": "2"}}
    assert set(result.times) == {"0", "1"}


def test_batch_reports_totals_and_next(rsps, conn):
    stub(rsps, "batch", "batch_user_pages")

    result = client.batch(conn, {"p0": ("user.get", {"start": 0})})

    assert result.totals == {"p0": 120}
    assert result.nexts == {"p0": 50}


def test_batch_outer_auth_failure_raises(rsps, conn):
    stub(rsps, "batch", "error_401_expired_token", status=401)

    with pytest.raises(errors.AuthExpired):
        client.batch(conn, message_commands(2), is_write=True)


def test_batch_outer_timeout_on_a_write_is_unknown(rsps, conn):
    rsps.post(f"{ENDPOINT}batch", body=requests.ReadTimeout("slow"))

    with pytest.raises(errors.Unknown):
        client.batch(conn, message_commands(2), is_write=True)


# --- php_query ---------------------------------------------------------------------------


def parse_str(query: str) -> dict[str, Any]:
    """What PHP's parse_str makes of a query string (the parts Bitrix relies on).

    Each name and value is URL-decoded first (``+`` is a space), then the name is split
    into a base and ``[key]`` parts; spaces and dots in the base become ``_``.
    """
    result: dict[str, Any] = {}
    for part in query.split("&"):
        if not part:
            continue
        raw_name, _, raw_value = part.partition("=")
        name, value = unquote_plus(raw_name), unquote_plus(raw_value)
        base = name.split("[", 1)[0]
        keys = [re.sub(r"[ .]", "_", base.lstrip(" "))]
        keys += re.findall(r"\[([^\]]*)\]", name[len(base) :])
        node = result
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return result


def php_view(value: Any) -> Any:
    """What a value looks like after http_build_query + parse_str: strings in nested dicts."""
    if isinstance(value, dict | list | tuple):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        out = {str(k): v for k, v in ((k, php_view(v)) for k, v in items) if v is not None}
        return out or None
    if value is None:
        return None
    return str(value)


def test_sub_call_query_round_trips_through_parse_str_rules():
    params = {
        "CODE": CODE,
        "USER_ID": 7,
        "MESSAGE": "Привет & hello = 50% off + more #tag ?q=1 [b]bold[/b]\nline",
        "ATTACH": {
            "COLOR": "#29619b",
            "BLOCKS": [
                {"MESSAGE": "a=b&c=d"},
                {"GRID": [{"DISPLAY": "LINE", "NAME": "Version", "VALUE": "2.4"}]},
                {"LINK": {"NAME": "x", "LINK": "https://example.com/?x=1&y=%20"}},
                {"DELIMITER": {"SIZE": 200, "COLOR": "#c6c6c6"}},
            ],
        },
        "KEYBOARD": {"BUTTONS": [{"TEXT": "Open", "LINK": "/path"}, {"TYPE": "NEWLINE"}]},
        "URL_PREVIEW": "N",
        "SKIPPED": None,
        "FILTER": {">=DATE_REGISTER": "2024-01-01", "!ID": [1, 2]},
    }

    assert parse_str(client.php_query(params)) == php_view(params)


top_keys = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="[]. "),
    min_size=1,
    max_size=8,
)
nested_keys = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="[]"),
    min_size=1,
    max_size=8,
)
scalars = st.one_of(st.text(max_size=20), st.integers(-(10**9), 10**9))
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3),
        st.dictionaries(nested_keys, children, min_size=1, max_size=3),
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, database=None)
@given(st.dictionaries(top_keys, trees, min_size=1, max_size=4))
def test_php_query_round_trips_any_nesting(params):
    assert parse_str(client.php_query(params)) == (php_view(params) or {})


@pytest.mark.parametrize("key", ["a.b", "a b", "a[b]", ""])
def test_php_query_refuses_top_level_keys_parse_str_would_rename(key):
    with pytest.raises(ValueError):
        client.php_query({key: "x"})


def test_php_query_refuses_brackets_in_nested_keys():
    with pytest.raises(ValueError):
        client.php_query({"FILTER": {"a]b": 1}})


def test_php_query_refuses_booleans():
    with pytest.raises(TypeError):
        client.php_query({"ACTIVE": True})
