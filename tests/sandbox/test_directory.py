"""user.get / user.search / department.get / user.current over the generated directory."""

from __future__ import annotations

import pytest

from b24app.sandbox.directory import build_directory

pytestmark = pytest.mark.sandbox


def _get(sandbox, method="user.get", **params):
    response = sandbox.call(method, **params)
    assert response.status_code == 200, response.text
    return response.json()


def test_directory_is_deterministic_with_russian_and_english_names():
    one, two = build_directory(1, 300), build_directory(1, 300)
    assert [u.email for u in one.users.values()] == [u.email for u in two.users.values()]
    names = [u.name for u in one.users.values()]
    assert any(any("а" <= ch <= "я" for ch in n.lower()) for n in names)
    assert any(n.isascii() for n in names)
    assert sum(not u.active for u in one.users.values()) > 5
    assert sum(u.user_type == "extranet" for u in one.users.values()) > 5
    assert build_directory(2, 300).users[10].email != one.users[10].email


def test_user_get_pages_by_fifty_with_total_and_next(sandbox):
    first = _get(sandbox)
    assert len(first["result"]) == 50
    assert first["total"] == 300
    assert first["next"] == 50
    last = _get(sandbox, start=250)
    assert len(last["result"]) == 50
    assert "next" not in last
    assert last["result"][-1]["ID"] == "300"


def test_user_get_rows_have_the_documented_types(sandbox):
    row = _get(sandbox, ID=3)["result"][0]
    assert row["ID"] == "3"
    assert row["ACTIVE"] is True
    assert row["UF_DEPARTMENT"] and all(isinstance(d, int) for d in row["UF_DEPARTMENT"])
    assert row["USER_TYPE"] == "employee"
    for key in ("NAME", "LAST_NAME", "EMAIL", "WORK_POSITION", "PERSONAL_GENDER"):
        assert key in row


def test_user_get_filters_active_flat_and_in_filter(sandbox):
    flat = _get(sandbox, ACTIVE="false")
    nested = _get(sandbox, **{"FILTER[ACTIVE]": "N"})
    assert flat["total"] == nested["total"] > 0
    assert all(row["ACTIVE"] is False for row in flat["result"])
    assert "6" in [row["ID"] for row in flat["result"]]
    active = _get(sandbox, **{"FILTER[ACTIVE]": "true"})
    assert active["total"] + flat["total"] == 300


def test_user_get_filters_by_user_type_and_department(sandbox):
    extranet = _get(sandbox, USER_TYPE="extranet")
    assert extranet["total"] > 0
    assert all(
        r["USER_TYPE"] == "extranet" and r["UF_DEPARTMENT"] == [] for r in extranet["result"]
    )
    dept = _get(sandbox, **{"FILTER[UF_DEPARTMENT]": "10"})
    assert dept["total"] > 0
    assert all(10 in r["UF_DEPARTMENT"] for r in dept["result"])


def test_user_get_filters_by_id_list_and_sorts(sandbox):
    body = {"FILTER": {"ID": [5, 2, 9]}, "SORT": "ID", "ORDER": "DESC"}
    result = sandbox.call("user.get", json=body).json()["result"]
    assert [r["ID"] for r in result] == ["9", "5", "2"]


def test_user_search_finds_by_name_and_email(sandbox):
    found = _get(sandbox, "user.search", FIND="Smith")
    assert "3" in [r["ID"] for r in found["result"]]
    by_mail = _get(sandbox, "user.search", FIND="ivan.kuznetsov")
    assert [r["ID"] for r in by_mail["result"]] == ["4"]
    cyrillic = _get(sandbox, "user.search", **{"FILTER[FIND]": "Петрова"})
    assert "2" in [r["ID"] for r in cyrillic["result"]]


def test_department_get_has_nested_departments(sandbox):
    body = _get(sandbox, "department.get")
    rows = {row["ID"]: row for row in body["result"]}
    assert body["total"] == len(rows) >= 10
    assert "PARENT" not in rows["1"]
    assert rows["10"]["PARENT"] == "4"
    assert isinstance(rows["10"]["SORT"], int)
    children = _get(sandbox, "department.get", PARENT=4)["result"]
    assert {r["ID"] for r in children} == {"10", "11", "12"}


def test_user_current_returns_the_token_owner(sandbox):
    assert _get(sandbox, "user.current", user=2)["result"]["ID"] == "2"
    assert _get(sandbox, "user.current", user=2)["result"]["NAME"] == "Мария"
