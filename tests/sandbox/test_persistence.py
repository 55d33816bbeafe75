"""The state file keeps installs, tokens, lines, handlers, ledger and deliveries across restarts."""

from __future__ import annotations

import json

from b24app.sandbox.state import LINE_CODE, Sandbox


def test_state_round_trips_through_the_file(tmp_path):
    path = tmp_path / "state.json"
    first = Sandbox(base_port=8190, portals=2, users=20, state_file=path)
    portal = first.portal(2)
    portal.app_state = "installed"
    portal.application_token = "a" * 32
    portal.lines[LINE_CODE] = 1001
    portal.handlers.append(
        {"event": "ONAPPINSTALL", "handler": "http://x/", "auth_type": "0", "offline": 0}
    )
    tokens = first.issue_tokens(portal, 3)
    first.record_delivery(
        portal,
        code=LINE_CODE,
        user_id=3,
        message="hi",
        attach=None,
        keyboard=None,
        url_preview=True,
    )
    first.save()
    assert json.loads(path.read_text())["version"] == 1

    second = Sandbox(base_port=8190, portals=2, users=20, state_file=path)
    assert second.restore() is True
    again = second.portal(2)
    assert again.installed and again.application_token == "a" * 32
    assert again.lines == {LINE_CODE: 1001}
    assert again.handlers[0]["event"] == "ONAPPINSTALL"
    assert second.access[tokens["access_token"]].user_id == 3
    assert second.refresh[tokens["refresh_token"]].portal == 2
    assert second.limit_reached(again, LINE_CODE, 3) is True
    assert [d["USER_ID"] for d in second.deliveries] == [3]
    assert second.portal(2).member_id == first.portal(2).member_id


def test_saving_without_changes_does_not_write(tmp_path):
    path = tmp_path / "state.json"
    sandbox = Sandbox(base_port=8190, portals=1, users=10, state_file=path)
    sandbox.save()
    assert not path.exists()


def test_member_ids_are_stable_32_hex():
    one, two = Sandbox(portals=2, users=10), Sandbox(portals=2, users=10)
    assert one.portal(1).member_id == two.portal(1).member_id != one.portal(2).member_id
    assert len(one.portal(1).member_id) == 32
    int(one.portal(1).member_id, 16)
