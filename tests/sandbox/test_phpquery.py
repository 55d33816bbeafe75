"""PHP-style query parsing and encoding used for form bodies, batch sub-calls and events."""

from __future__ import annotations

from b24app.sandbox.phpquery import build_query, parse_str, php_bool, php_json_map


def test_nested_brackets_become_nested_dicts_with_string_keys():
    assert parse_str("A[B][0][C]=x&A[B][1][C]=y") == {
        "A": {"B": {"0": {"C": "x"}, "1": {"C": "y"}}}
    }


def test_empty_brackets_append():
    assert parse_str("a[]=1&a[]=2&a[5]=3&a[]=4") == {"a": {"0": "1", "1": "2", "5": "3", "6": "4"}}


def test_plus_and_percent_decoding():
    assert parse_str("m=Hello+w%C3%B6rld%21&k%5Bx%5D=1") == {"m": "Hello wörld!", "k": {"x": "1"}}


def test_later_duplicates_win_and_nameless_pairs_are_dropped():
    assert parse_str("a=1&a=2&=3&&b") == {"a": "2", "b": ""}


def test_dots_and_spaces_in_top_level_names_become_underscores():
    assert parse_str("a.b=1&c d=2") == {"a_b": "1", "c_d": "2"}


def test_build_query_round_trips_nested_data():
    data = {"event": "ONAPPINSTALL", "data": {"VERSION": "1"}, "auth": {"domain": "x:1"}}
    encoded = build_query(data)
    assert encoded == "event=ONAPPINSTALL&data%5BVERSION%5D=1&auth%5Bdomain%5D=x%3A1"
    assert parse_str(encoded) == data


def test_build_query_lists_and_booleans():
    assert parse_str(build_query({"a": [1, True, None], "s": "a b"})) == {
        "a": {"0": "1", "1": "1"},
        "s": "a b",
    }


def test_php_bool_cast():
    assert [php_bool(v) for v in ("", "0", 0, None, [], False)] == [False] * 6
    assert [php_bool(v) for v in ("false", "1", "N", 1, True)] == [True] * 5


def test_php_json_map_lists_only_for_sequential_keys():
    assert php_json_map({}) == []
    assert php_json_map({0: "a", 1: "b"}) == ["a", "b"]
    assert php_json_map({1: "b"}) == {"1": "b"}
    assert php_json_map({"k": 1}) == {"k": 1}
