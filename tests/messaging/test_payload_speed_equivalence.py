"""The fast paths of messaging.payload against straightforward reference implementations.

`attach_size`, `validate_params` and `server_accept` serialise with the C JSON encoder and
PHP's escapes patched in afterwards, skip `_phpify` for freshly decoded JSON, and measure plain
grids from their strings. Each of those must give exactly what the slow, obvious code gives:
the character-by-character json_encode and the recursive `_phpify` below are the module's
former implementations, kept here as the reference.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b24app.messaging import payload

EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(EXAMPLES, max_examples=150)
RULES: tuple[payload.SizeRule, ...] = ("chars", "bytes")
FLAGS = [(True, False), (False, True), (True, True), (False, False)]  # (unicode, hex_specials)

# --- the reference -----------------------------------------------------------------------------

MAX_DEPTH = 256
SHORT_ESCAPES = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
INT_KEY_RE = re.compile(r"0|-?[1-9][0-9]*")
NEWLINE_RE = re.compile("\r\n|[\n\x0b\x0c\r\x85\u2028\u2029]")
PHP_TRIM = " \t\n\r\0\x0b"


def reference_json(value: Any, *, unicode: bool, hex_specials: bool) -> str:
    parts: list[str] = []
    _reference_json_into(value, parts, unicode=unicode, hex_specials=hex_specials, depth=0)
    return "".join(parts)


def _reference_json_into(
    value: Any, parts: list[str], *, unicode: bool, hex_specials: bool, depth: int
) -> None:
    flags = {"unicode": unicode, "hex_specials": hex_specials}
    if depth > MAX_DEPTH * 2 or value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        parts.append(str(value))
    elif isinstance(value, float):
        parts.append(repr(value) if math.isfinite(value) else "0")
    elif isinstance(value, str):
        parts.append(reference_json_string(value, **flags))
    elif isinstance(value, dict) and value:
        parts.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                parts.append(",")
            parts.append(reference_json_string(str(key), **flags))
            parts.append(":")
            _reference_json_into(item, parts, **flags, depth=depth + 1)
        parts.append("}")
    elif isinstance(value, dict | list | tuple):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _reference_json_into(item, parts, **flags, depth=depth + 1)
        parts.append("]")
    else:
        parts.append("null")


def reference_json_string(text: str, *, unicode: bool, hex_specials: bool) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append("\\u0022" if hex_specials else '\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "/":
            out.append("\\/")
        elif char in SHORT_ESCAPES:
            out.append(SHORT_ESCAPES[char])
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        elif hex_specials and char in "<>&'":
            out.append(f"\\u{code:04X}")
        elif code < 0x80 or (unicode and code not in (0x2028, 0x2029)):
            out.append(char)
        elif code > 0xFFFF:
            high, low = divmod(code - 0x10000, 0x400)
            out.append(f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}")
        else:
            out.append(f"\\u{code:04x}")
    out.append('"')
    return "".join(out)


def reference_size(value: Any, rule: str) -> int:
    return len(reference_json(value, unicode=rule == "chars", hex_specials=rule == "bytes"))


def reference_phpify(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, dict):
        items = [(_reference_key(k), reference_phpify(v, depth + 1)) for k, v in value.items()]
        if all(isinstance(k, int) for k, _v in items):
            return [v for _k, v in items]
        return {str(k): v for k, v in items}
    if isinstance(value, list | tuple):
        return [reference_phpify(v, depth + 1) for v in value]
    if value is None or isinstance(value, str | int | float):
        return value
    return None


def _reference_key(key: Any) -> int | str:
    if isinstance(key, bool):
        return int(key)
    if isinstance(key, int):
        return key
    text = str(key)
    return int(text) if INT_KEY_RE.fullmatch(text) else text


def reference_grid(value: Any) -> list[dict[str, Any]]:
    """The server's GRID rows, written out rule by rule."""
    items = []
    for grid in value.values() if isinstance(value, dict) else value:
        if not isinstance(grid, dict):
            continue
        display = grid.get("DISPLAY")
        if not (display is True or display == "LINE"):
            name, val = grid.get("NAME"), grid.get("VALUE")
            if (name is None and val is None) or (_trim(name) == "" and _trim(val) == ""):
                continue
        out: dict[str, Any] = {}
        choices = ("BLOCK", "LINE", "CARD", "ROW", "COLUMN", "TABLE")
        if display is True or (isinstance(display, str) and display in choices):
            if display is True or display == "COLUMN":
                display = "ROW"
            if display == "CARD":
                display = "LINE"
            out["DISPLAY"] = display
        else:
            out["DISPLAY"] = "BLOCK"
        out["NAME"] = NEWLINE_RE.sub(" ", _trim(grid.get("NAME")))
        out["VALUE"] = _trim(grid.get("VALUE")).replace("#BR#", "[BR]")
        if isinstance(grid.get("COLOR"), str) and re.fullmatch(
            r"#[a-fA-F0-9]{3}(?:[a-fA-F0-9]{3})?", grid["COLOR"]
        ):
            out["COLOR"] = grid["COLOR"]
        for key in ("WIDTH", "HEIGHT", "USER_ID", "CHAT_ID"):
            if grid.get(key) is not None and payload._intval(grid[key]) > 0:
                out[key] = payload._intval(grid[key])
        if isinstance(grid.get("LINK"), str) and re.match(r"(?:/|https?://)", grid["LINK"]):
            out["LINK"] = grid["LINK"]
        items.append(out)
    return items


def _trim(value: Any) -> str:
    return payload._php_str(value).strip(PHP_TRIM)


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list | tuple):
        return 1 + max(map(depth_of, value), default=0)
    return 0


def nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


# --- strategies ------------------------------------------------------------------------------

# Whatever PHP and the C encoder might spell differently, alone or next to each other.
TRICKY = [
    *"\"\\/<>&'",
    "\x00",
    "\x01",
    "\x1f",
    "\x7f",
    "\x80",
    "\b",
    "\f",
    "\n",
    "\r",
    "\t",
    "\x0b",
    "\x85",
    "\u00a0",
    "\u2028",
    "\u2029",
    "\ud800",
    "\udfff",
    "я",
    "Ж",
    "😀",
    "{}",
    "[b]",
    "]",
    "{",
    "#BR#",
    "\\u007f",
    '\\"',
    "\\\\",
    " ",
    "a",
    "0",
]
tricky_texts = st.lists(st.sampled_from(TRICKY), max_size=8).map("".join) | st.text(max_size=12)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | tricky_texts
keys = tricky_texts | st.sampled_from(["0", "1", "-1", "01", "", "-0", "NAME"])
json_like = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=30,
)
odd_keys = st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False)
odd_values = st.recursive(
    scalars | st.builds(object) | st.frozensets(st.integers(), max_size=2),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(keys | odd_keys, children, max_size=4)
    ),
    max_leaves=20,
)
displays: st.SearchStrategy[Any] = st.sampled_from(
    [None, "LINE", "BLOCK", "CARD", "COLUMN", "ROW", "TABLE", "line", "x", True, False, 0, []]
)
edge = st.sampled_from(["", " ", "0", "\x00", "\u00a0 ", "\u00a0\x00", 0, 5, None, True, 1.5])
grid_items = st.fixed_dictionaries(
    {},
    optional={
        "DISPLAY": displays,
        "NAME": tricky_texts | edge,
        "VALUE": tricky_texts | edge,
        "COLOR": st.sampled_from(["#fff", "red"]),
        "WIDTH": edge,
        "LINK": st.sampled_from(["/a", "ftp://x"]),
        "OTHER": st.just(1),
    },
)
grids = st.lists(grid_items | edge, max_size=6)
plain_items = st.fixed_dictionaries(
    {"NAME": tricky_texts, "VALUE": tricky_texts}, optional={"DISPLAY": displays}
)
blocks = st.one_of(
    st.builds(lambda g: {"GRID": g}, grids | st.lists(plain_items, max_size=8)),
    st.builds(lambda t: {"MESSAGE": t}, tricky_texts),
    st.builds(lambda t: {"LINK": {"LINK": "https://e.com/" + t, "NAME": t}}, tricky_texts),
    st.builds(lambda t: {"IMAGE": [{"LINK": "/i.png", "NAME": t, "WIDTH": 5}]}, tricky_texts),
    st.just({"DELIMITER": {}}),
)
attaches = st.one_of(
    st.lists(blocks, max_size=4),
    st.fixed_dictionaries(
        {"BLOCKS": st.lists(blocks, max_size=4)}, optional={"COLOR": st.just("#abc")}
    ),
)


def encodings(value: Any) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            json.dumps(value),
            json.dumps(value, ensure_ascii=False),
            json.dumps(value, ensure_ascii=False, indent=1),
            json.dumps(value, separators=(",", ":")),
        ]
    )


# --- json_encode ---------------------------------------------------------------------------------


@EXAMPLES
@given(json_like)
def test_php_json_is_the_reference_json_encode(value: Any) -> None:
    for unicode, hex_specials in FLAGS:
        flags = {"unicode": unicode, "hex_specials": hex_specials}
        expected = reference_json(value, **flags)
        assert payload._php_json(value, **flags) == expected
        assert payload._php_json_length(value, **flags) == len(expected)
    for rule in RULES:
        assert payload.attach_size(value, rule) == reference_size(value, rule)


@SOME
@given(odd_values)
def test_attach_size_of_any_value_is_the_reference_length(value: Any) -> None:
    # Non-string keys, NaN, objects JSON can't carry, empty dicts, tuples.
    for rule in RULES:
        assert payload.attach_size(value, rule) == reference_size(value, rule)


@SOME
@given(tricky_texts)
def test_one_string_is_escaped_like_php(text: str) -> None:
    for unicode, hex_specials in FLAGS:
        flags = {"unicode": unicode, "hex_specials": hex_specials}
        assert payload._php_json_string(text, **flags) == reference_json_string(text, **flags)


@pytest.mark.parametrize("depth", [255, 256, 257, 258, 511, 512, 513, 514, 700])
def test_depth_cap_is_kept(depth: int) -> None:
    value = nested(depth)
    for unicode, hex_specials in FLAGS:
        flags = {"unicode": unicode, "hex_specials": hex_specials}
        expected = reference_json(value, **flags)
        assert payload._php_json(value, **flags) == expected
        assert payload._php_json_length(value, **flags) == len(expected)
    assert repr(payload._phpify(value)) == repr(reference_phpify(value))
    text = json.dumps(value)
    assert repr(payload._phpify_json(json.loads(text), text)) == repr(reference_phpify(value))


def test_cycles_and_huge_values_behave_as_before() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    assert payload._php_json(cycle, unicode=True, hex_specials=False) == reference_json(
        cycle, unicode=True, hex_specials=False
    )
    with pytest.raises(ValueError):  # str() of an int past Python's digit limit
        payload.attach_size({"X": 10**5000}, "bytes")


# --- nesting and _phpify -----------------------------------------------------------------------


@SOME
@given(json_like.flatmap(lambda v: st.tuples(st.just(v), encodings(v))), st.integers(0, 6))
def test_nesting_exceeds_measures_only_brackets_outside_strings(
    case: tuple[Any, str], limit: int
) -> None:
    value, text = case
    assert payload._nesting_exceeds(text, limit) == (depth_of(value) > limit)


@SOME
@given(json_like.flatmap(encodings))
def test_decoded_json_is_phpified_like_the_reference(text: str) -> None:
    decoded = json.loads(text)
    assert repr(payload._phpify_json(decoded, text)) == repr(reference_phpify(decoded))


@pytest.mark.parametrize(
    "text",
    [
        '{"\\u0031": "a", "\\u0032": "b"}',  # integer keys written as escapes
        '{"\\u002d1": 1}',
        '[{ \n "0" : 1}, {"x": {}}]',
        '{"a": {"0": 1, "1": 2}, "b": {\t}}',
        '{"a": 1, "0": 2}',
        '{"1": 1, "a": 2}',
        '{"s": "{\\"1\\": 2}"}',
    ],
)
def test_integer_keys_and_empty_objects_are_found_in_any_spelling(text: str) -> None:
    decoded = json.loads(text)
    assert repr(payload._phpify_json(decoded, text)) == repr(reference_phpify(decoded))


@SOME
@given(odd_values)
def test_phpify_is_the_reference(value: Any) -> None:
    assert repr(payload._phpify(value)) == repr(reference_phpify(value))


# --- grids ---------------------------------------------------------------------------------------


@EXAMPLES
@given(grids | st.lists(plain_items, max_size=8))
def test_grids_are_normalised_and_measured_like_the_reference(body: list[Any]) -> None:
    rows = reference_grid(body)
    assert payload._server_grid(body) == rows
    plain = payload._plain_grid(body)
    if plain is None:
        return
    assert len(plain.shown) == len(rows)
    for unicode, hex_specials in FLAGS:
        flags = {"unicode": unicode, "hex_specials": hex_specials}
        assert payload._plain_rows_length(plain, **flags) == len(reference_json(rows, **flags))
    if plain.policy_ok:
        checker = payload._Checker("ATTACH_ERROR")
        for item in body:
            payload._check_item(item, "ITEM", payload._GRID_ITEM_RULE, checker)
        assert checker.problems == []


@EXAMPLES
@given(attaches.flatmap(lambda a: st.just(a) | encodings(a)))
def test_measured_attach_is_the_reference_size(value: Any) -> None:
    normalised = payload.parse_attach(value, 1_700_000_000, random_color=lambda: "#000000")
    data = payload._phpify(value)
    if isinstance(data, str):
        data = payload._decode_js(data)[2]
    measured = payload._measure_attach(data, payload._Checker("ATTACH_ERROR"))
    assert measured == (None if normalised is None else reference_size(normalised, "bytes"))


@pytest.mark.parametrize("text", ["Item", "Пункт / <b> & 'x'", 'a "q" \\ \u2028 😀 #BR#'])
def test_policy_cap_is_measured_at_the_byte(text: str) -> None:
    def attach(count: int) -> str:
        rows = [{"DISPLAY": "LINE", "NAME": f"{text} {n}", "VALUE": text} for n in range(count)]
        return json.dumps({"BLOCKS": [{"GRID": rows}]}, ensure_ascii=False)

    def size(count: int) -> int:
        return payload.attach_size(payload.parse_attach(attach(count), 1_700_000_000), "bytes")

    low, high = 1, 4000  # the last row count under the cap, by bisection
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (
            (middle, high) if size(middle) < payload.POLICY_SIZE_LIMIT else (low, middle - 1)
        )
    # Either side of the cap, checked against the reference.
    for rows, over in ((low, False), (low + 1, True)):
        normalised = payload.parse_attach(attach(rows), 1_700_000_000)
        expected = reference_size(normalised, "bytes")
        assert (expected >= payload.POLICY_SIZE_LIMIT) == over
        problems = payload.validate_attach(attach(rows))
        assert [p.code for p in problems] == (["ATTACH_OVERSIZE"] if over else [])
        if over:
            assert f"{expected} bytes" in str(problems[0].message)
