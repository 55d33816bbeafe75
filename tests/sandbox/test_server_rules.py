"""Hand-written vectors for the server's rules in `b24app.messaging.payload` (layer 1).

The sandbox portal answers `imopenlines.network.message.add` with these rules, so every
expectation here is written out by hand from spec §5 (and, where the spec summarises, from the
server source it cites), never produced by the code under test. Each vector names its source.
"""

from __future__ import annotations

from typing import Any

import pytest

from b24app.messaging import payload

CODE = "ab515f5d85a8b844d484f6ea75a2e494"  # joined line
OTHER = "0123456789abcdef0123456789abcdef"  # 32 characters, never joined
NOW = 1_700_000_000

# spec §5.3 table, copied by hand
DESCRIPTIONS = {
    "CODE": "You entered an invalid code",
    "NOT_FOUND": "Line not found",
    "USER_ID_EMPTY": "User ID can't be empty",
    "USER_MESSAGE_LIMIT": "You cant send more than one message per week to each user.",
    "MESSAGE_EMPTY": "Message can't be empty",
    "ATTACH_OVERSIZE": "You have exceeded the maximum allowable size of attach",
    "ATTACH_ERROR": "Incorrect attach params",
    "KEYBOARD_ERROR": "Incorrect keyboard params",
}


def call(
    params: dict[str, Any],
    *,
    joined: tuple[str, ...] = (CODE,),
    limited: tuple[tuple[str, int], ...] = (),
    rule: payload.SizeRule = "chars",
) -> payload.ServerMessage | payload.ServerRefusal:
    return payload.server_accept(
        params,
        line_joined=lambda code: code in joined,
        limit_reached=lambda code, user_id: (code, user_id) in limited,
        now=NOW,
        size_rule=rule,
        random_color=lambda: "#123456",
    )


def base(**extra: Any) -> dict[str, Any]:
    return {"CODE": CODE, "USER_ID": 2, "MESSAGE": "hi", **extra}


def button(**fields: Any) -> dict[str, Any]:
    """A normalised button as the newest server stores it (defaults from Im\\Bot\\Keyboard)."""
    out: dict[str, Any] = {
        "BOT_ID": 0,
        "TYPE": "BUTTON",
        "TEXT": "Go",
        "VOTE": "N",
        "BLOCK": "N",
        "WAIT": "N",
        "CONTEXT": "ALL",
        "DISABLED": "N",
        "DISPLAY": "BLOCK",
    }
    out.update(fields)
    return out


def one_message(text: str) -> list[dict[str, Any]]:
    return [{"MESSAGE": text}]


# Size of {"ID":1700000000,"BLOCKS":[{"MESSAGE":"<text>"}],"DESCRIPTION":""} without <text>,
# counted by hand: 39 characters before the text, 21 after it.
OVERHEAD = 60
LIMITED = ((CODE, 2),)
KEYBOARD_JSON = '{"BUTTONS":[{"TEXT":"a","LINK":"https://e.com"}]}'

ERROR_VECTORS = [
    # --- CODE: spec §5.3 #2 "CODE missing or length ≠ 32"
    pytest.param({"USER_ID": 2, "MESSAGE": "hi"}, {}, "CODE", id="code-missing"),
    pytest.param(base(CODE=CODE[:31]), {}, "CODE", id="code-31-chars"),
    pytest.param(base(CODE=CODE + "0"), {}, "CODE", id="code-33-chars"),
    pytest.param(base(CODE=""), {}, "CODE", id="code-empty"),
    # spec §5.3 #2: "missing" is PHP isset(), which is false for null
    pytest.param(base(CODE=None), {}, "CODE", id="code-null"),
    pytest.param(base(CODE=[CODE]), {}, "CODE", id="code-array"),
    # spec §5.3 #2 checks length only; the older source counts bytes (strlen): 64 here
    pytest.param(
        base(CODE="я" * 32), {"joined": ("я" * 32,), "rule": "bytes"}, "CODE", id="code-bytes-rule"
    ),
    # spec §5.3 #2 before #4/#5: a short code is CODE even though the line is unknown too
    pytest.param(base(CODE="short"), {"joined": ()}, "CODE", id="code-before-not-found"),
    # --- NOT_FOUND: spec §5.3 #4/#5 "no bot whose APP_ID equals CODE (line not joined)"
    pytest.param(base(CODE=OTHER), {}, "NOT_FOUND", id="not-found-unjoined"),
    pytest.param(base(CODE=CODE.upper()), {}, "NOT_FOUND", id="not-found-other-case"),
    # spec §5.3 order: #4/#5 before #6 USER_ID_EMPTY, #7 limit and #8 MESSAGE_EMPTY
    pytest.param(base(CODE=OTHER, USER_ID=0), {}, "NOT_FOUND", id="not-found-before-user"),
    pytest.param(base(CODE=OTHER, MESSAGE=""), {}, "NOT_FOUND", id="not-found-before-message"),
    pytest.param(
        base(CODE=OTHER), {"limited": ((OTHER, 2),)}, "NOT_FOUND", id="not-found-before-limit"
    ),
    # spec §5.2: parameter names are upper-cased by the server
    pytest.param(
        {"code": OTHER, "user_id": 2, "message": "hi"}, {}, "NOT_FOUND", id="not-found-lower-keys"
    ),
    # --- USER_ID_EMPTY: spec §5.3 #6, §5.2 "cast to int; 0/missing/non-numeric"
    pytest.param({"CODE": CODE, "MESSAGE": "hi"}, {}, "USER_ID_EMPTY", id="user-missing"),
    pytest.param(base(USER_ID=0), {}, "USER_ID_EMPTY", id="user-zero"),
    pytest.param(base(USER_ID="0"), {}, "USER_ID_EMPTY", id="user-zero-string"),
    pytest.param(base(USER_ID="abc"), {}, "USER_ID_EMPTY", id="user-non-numeric"),
    pytest.param(base(USER_ID=""), {}, "USER_ID_EMPTY", id="user-empty-string"),
    # spec §5.2 "cast to int": PHP reads "0x1A" as 0 and 0.9 as 0
    pytest.param(base(USER_ID="0x1A"), {}, "USER_ID_EMPTY", id="user-hex-string"),
    pytest.param(base(USER_ID=0.9), {}, "USER_ID_EMPTY", id="user-fraction"),
    pytest.param(base(USER_ID=None), {}, "USER_ID_EMPTY", id="user-null"),
    # spec §5.3 #6 before #7: the weekly limit is not consulted for user 0
    pytest.param(
        base(USER_ID=0), {"limited": ((CODE, 0),)}, "USER_ID_EMPTY", id="user-before-limit"
    ),
    # --- USER_MESSAGE_LIMIT: spec §5.3 #7, §5.7
    pytest.param(base(), {"limited": LIMITED}, "USER_MESSAGE_LIMIT", id="limit"),
    # spec §5.3 note: "the weekly limit (7) is evaluated before message/attach/keyboard"
    pytest.param(
        base(MESSAGE=""), {"limited": LIMITED}, "USER_MESSAGE_LIMIT", id="limit-before-message"
    ),
    pytest.param(
        base(ATTACH="not json"),
        {"limited": LIMITED},
        "USER_MESSAGE_LIMIT",
        id="limit-before-attach",
    ),
    pytest.param(
        base(KEYBOARD=KEYBOARD_JSON),
        {"limited": LIMITED},
        "USER_MESSAGE_LIMIT",
        id="limit-before-keyboard",
    ),
    # spec §5.7: the quota key is the cast USER_ID
    pytest.param(
        base(USER_ID="2abc"), {"limited": LIMITED}, "USER_MESSAGE_LIMIT", id="limit-cast-user"
    ),
    # spec §5.7: per (line, recipient); another recipient is free
    pytest.param(base(USER_ID=3), {"limited": LIMITED}, None, id="limit-other-user-ok"),
    # --- MESSAGE_EMPTY: spec §5.3 #8, §5.2 "trimmed; empty after trim"
    pytest.param({"CODE": CODE, "USER_ID": 2}, {}, "MESSAGE_EMPTY", id="message-missing"),
    pytest.param(base(MESSAGE=""), {}, "MESSAGE_EMPTY", id="message-empty"),
    # PHP trim() strips space, \t, \n, \r, \0 and \x0B
    pytest.param(base(MESSAGE=" \t\n\r\0\x0b "), {}, "MESSAGE_EMPTY", id="message-php-blank"),
    pytest.param(base(MESSAGE=["hi"]), {}, "MESSAGE_EMPTY", id="message-array"),
    pytest.param(base(MESSAGE=None), {}, "MESSAGE_EMPTY", id="message-null"),
    # spec §5.3 #8 before #10
    pytest.param(base(MESSAGE="", ATTACH="junk"), {}, "MESSAGE_EMPTY", id="message-before-attach"),
    # PHP trim() leaves a no-break space alone, so the server accepts it
    pytest.param(base(MESSAGE="\u00a0"), {}, None, id="message-nbsp-ok"),
    pytest.param(base(MESSAGE="0"), {}, None, id="message-zero-ok"),
    # --- ATTACH_OVERSIZE: spec §5.3 #9, §5.5 "How the size limit is measured"
    pytest.param(
        base(ATTACH=one_message("a" * (60_000 - OVERHEAD))), {}, "ATTACH_OVERSIZE", id="size-60000"
    ),
    pytest.param(base(ATTACH=one_message("a" * (59_999 - OVERHEAD))), {}, None, id="size-59999"),
    # spec §5.5: "/" is still escaped as "\/" (2 characters each): 60 + 2 * 29 970 = 60 000
    pytest.param(base(ATTACH=one_message("/" * 29_970)), {}, "ATTACH_OVERSIZE", id="size-slashes"),
    pytest.param(base(ATTACH=one_message("/" * 29_969)), {}, None, id="size-slashes-under"),
    # spec §5.5 older rule: 6 bytes per Cyrillic letter: 60 + 6 * 9 990 = 60 000
    pytest.param(
        base(ATTACH=one_message("я" * 9_990)),
        {"rule": "bytes"},
        "ATTACH_OVERSIZE",
        id="size-cyrillic-bytes",
    ),
    pytest.param(
        base(ATTACH=one_message("я" * 9_989)), {"rule": "bytes"}, None, id="size-cyrillic-bytes-ok"
    ),
    # spec §5.5 current rule: the same text is 10 050 characters
    pytest.param(base(ATTACH=one_message("я" * 9_990)), {}, None, id="size-cyrillic-chars-ok"),
    # spec §5.5 older rule: "<" becomes \u003C (6 bytes)
    pytest.param(
        base(ATTACH=one_message("<" * 9_990)), {"rule": "bytes"}, "ATTACH_OVERSIZE", id="size-lt"
    ),
    # spec §5.5 current rule counts code points like mb_strlen: one per emoji
    pytest.param(
        base(ATTACH=one_message("😀" * (60_000 - OVERHEAD))), {}, "ATTACH_OVERSIZE", id="size-emoji"
    ),
    # spec §5.5: AS_DESCRIPTION copies the text into DESCRIPTION: 60 + 2 * 29 970 = 60 000
    pytest.param(
        base(ATTACH=[{"MESSAGE": {"TEXT": "a" * 29_970, "AS_DESCRIPTION": "Y"}}]),
        {},
        "ATTACH_OVERSIZE",
        id="size-description-counts",
    ),
    # spec §5.5: "dropped/invalid fields do not count"
    pytest.param(
        base(ATTACH=[{"MESSAGE": "ok"}, {"LINK": {"LINK": "ftp://x", "NAME": "n" * 70_000}}]),
        {},
        None,
        id="size-dropped-block-free",
    ),
    # spec §5.5: "Source ignores the caller's ID and uses the current unix time"
    pytest.param(
        base(ATTACH={"ID": "9" * 70_000, "BLOCKS": [{"MESSAGE": "ok"}]}), {}, None, id="size-id"
    ),
    # spec §5.3 #9 before #11
    pytest.param(
        base(ATTACH=one_message("a" * 60_000), KEYBOARD="x"),
        {},
        "ATTACH_OVERSIZE",
        id="size-before-keyboard",
    ),
    # --- ATTACH_ERROR: spec §5.3 #10 "truthy but unparsable / no valid block"
    pytest.param(base(ATTACH="not json at all"), {}, "ATTACH_ERROR", id="attach-not-json"),
    pytest.param(base(ATTACH="{}"), {}, "ATTACH_ERROR", id="attach-empty-json"),
    pytest.param(base(ATTACH={"BLOCKS": []}), {}, "ATTACH_ERROR", id="attach-no-blocks"),
    pytest.param(base(ATTACH=one_message("   ")), {}, "ATTACH_ERROR", id="attach-blank-message"),
    pytest.param(base(ATTACH=[{"UNKNOWN": "x"}]), {}, "ATTACH_ERROR", id="attach-unknown-block"),
    # spec §5.5: a lone block is not an ATTACH; its values are read as blocks
    pytest.param(base(ATTACH={"MESSAGE": "hi"}), {}, "ATTACH_ERROR", id="attach-bare-block"),
    pytest.param(base(ATTACH=5), {}, "ATTACH_ERROR", id="attach-number"),
    pytest.param(base(ATTACH="123"), {}, "ATTACH_ERROR", id="attach-json-number"),
    pytest.param(
        base(ATTACH=[{"LINK": {"LINK": "ftp://x"}}]), {}, "ATTACH_ERROR", id="attach-bad-url"
    ),
    pytest.param(base(ATTACH={"BLOCKS": "text"}), {}, "ATTACH_ERROR", id="attach-blocks-string"),
    # spec §5.3 #10 before #11
    pytest.param(base(ATTACH="x", KEYBOARD="y"), {}, "ATTACH_ERROR", id="attach-before-keyboard"),
    # --- KEYBOARD_ERROR: spec §5.3 #11, §5.6
    # spec §5.6: "a KEYBOARD sent as a string is not JSON-decoded ... even when valid JSON"
    pytest.param(base(KEYBOARD=KEYBOARD_JSON), {}, "KEYBOARD_ERROR", id="keyboard-json-string"),
    pytest.param(base(KEYBOARD=[{"TEXT": "a"}]), {}, "KEYBOARD_ERROR", id="keyboard-no-action"),
    # spec §5.6: COMMAND "only kept when the keyboard has a BOT_ID > 0"
    pytest.param(
        base(KEYBOARD=[{"TEXT": "a", "COMMAND": "/x"}]), {}, "KEYBOARD_ERROR", id="keyboard-command"
    ),
    # spec §5.6: the method copies the request's BOT_ID over the keyboard's own
    pytest.param(
        base(KEYBOARD={"BUTTONS": [{"TEXT": "a", "COMMAND": "x"}], "BOT_ID": 5}),
        {},
        "KEYBOARD_ERROR",
        id="keyboard-inner-bot-id-ignored",
    ),
    pytest.param(
        base(KEYBOARD=[{"TEXT": " ", "LINK": "https://e.com"}]),
        {},
        "KEYBOARD_ERROR",
        id="keyboard-blank-text",
    ),
    pytest.param(base(KEYBOARD={"BUTTONS": "x"}), {}, "KEYBOARD_ERROR", id="keyboard-buttons-str"),
    # spec §5.6 FUNCTION: "ignored unless internally enabled → dropped"
    pytest.param(
        base(KEYBOARD=[{"TEXT": "a", "LINK": "https://e.com", "FUNCTION": "go"}]),
        {},
        "KEYBOARD_ERROR",
        id="keyboard-function",
    ),
    # spec §5.6: a bare object is wrapped as BUTTONS, so its values are read as buttons
    pytest.param(
        base(KEYBOARD={"TEXT": "a", "LINK": "https://e.com"}),
        {},
        "KEYBOARD_ERROR",
        id="keyboard-bare-button",
    ),
    # spec §5.2 BOT_ID "only used as the keyboard owner": with it, COMMAND survives
    pytest.param(
        base(KEYBOARD=[{"TEXT": "a", "COMMAND": "x"}], BOT_ID=5), {}, None, id="keyboard-bot-id-ok"
    ),
]


@pytest.mark.parametrize(("params", "options", "expected"), ERROR_VECTORS)
def test_server_check(
    params: dict[str, Any], options: dict[str, Any], expected: str | None
) -> None:
    result = call(params, **options)
    if expected is None:
        assert isinstance(result, payload.ServerMessage), result
    else:
        assert result == payload.ServerRefusal(expected, DESCRIPTIONS[expected], 400)


def test_limit_is_not_consulted_before_the_user_id_check() -> None:
    # spec §5.3: checks "stop at the first failure"
    asked: list[tuple[str, int]] = []

    def limit(code: str, user_id: int) -> bool:
        asked.append((code, user_id))
        return True

    result = payload.server_accept(base(USER_ID=0), line_joined=lambda c: True, limit_reached=limit)
    assert isinstance(result, payload.ServerRefusal)
    assert result.code == "USER_ID_EMPTY"
    assert asked == []


def test_line_and_limit_callbacks_get_the_code_and_cast_user() -> None:
    # spec §5.7: the quota is per (line, recipient), the recipient cast to int
    seen: list[object] = []

    def joined(code: str) -> bool:
        seen.append(code)
        return True

    def limited(code: str, user_id: int) -> bool:
        seen.append((code, user_id))
        return False

    payload.server_accept(base(USER_ID=" 42"), line_joined=joined, limit_reached=limited)
    assert seen == [CODE, (CODE, 42)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # spec §5.2 USER_ID "cast to int" (PHP (int) rules)
        pytest.param("7", 7, id="digits"),
        pytest.param(" 12", 12, id="leading-space"),
        pytest.param("12abc", 12, id="numeric-prefix"),
        pytest.param("1e3", 1000, id="exponent"),
        pytest.param(7.9, 7, id="float"),
        pytest.param(True, 1, id="true"),
        pytest.param("-3", -3, id="negative-is-not-empty"),
    ],
)
def test_user_id_cast(raw: object, expected: int) -> None:
    result = call(base(USER_ID=raw))
    assert isinstance(result, payload.ServerMessage)
    assert result.user_id == expected


def test_accepted_message_fields() -> None:
    # spec §5.2: MESSAGE trimmed, URL_PREVIEW default Y; §5.5/§5.6 normalised forms
    result = call(
        base(
            MESSAGE="  Hello [b]world[/b]  ",
            ATTACH=[{"MESSAGE": "a"}],
            KEYBOARD=[{"TEXT": "Go", "LINK": "/x"}],
        )
    )
    assert result == payload.ServerMessage(
        code=CODE,
        user_id=2,
        message="Hello [b]world[/b]",
        attach={"ID": NOW, "BLOCKS": [{"MESSAGE": "a"}], "DESCRIPTION": ""},
        keyboard={"BUTTONS": [button(LINK="/x")]},
        url_preview=True,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # spec §5.2 URL_PREVIEW: "only the exact value N disables link previews"
        pytest.param("N", False, id="N"),
        pytest.param("n", True, id="lower-n"),
        pytest.param("Y", True, id="Y"),
        pytest.param("NO", True, id="NO"),
        pytest.param(None, True, id="null"),
    ],
)
def test_url_preview(value: object, expected: bool) -> None:
    result = call(base(URL_PREVIEW=value))
    assert isinstance(result, payload.ServerMessage)
    assert result.url_preview is expected


@pytest.mark.parametrize(
    "value",
    [
        # spec §5.2 ATTACH/KEYBOARD: "falsy ("", 0, [], missing) = no attachment"
        pytest.param("", id="empty-string"),
        pytest.param(0, id="zero"),
        pytest.param("0", id="zero-string"),  # PHP empty("0") is true
        pytest.param([], id="empty-list"),
        pytest.param({}, id="empty-object"),
        pytest.param(None, id="null"),
    ],
)
def test_falsy_attach_and_keyboard_mean_none(value: object) -> None:
    result = call(base(ATTACH=value, KEYBOARD=value))
    assert isinstance(result, payload.ServerMessage)
    assert result.attach is None
    assert result.keyboard is None


# --- form-encoded bodies: PHP arrays arrive as dicts with numeric keys -------------------------

FORM_VECTORS = [
    # spec §3.1: PHP-style nesting ATTACH[BLOCKS][0][MESSAGE]=…
    pytest.param(
        {"BLOCKS": {"0": {"MESSAGE": "a"}, "1": {"DELIMITER": {"SIZE": "30"}}}},
        None,
        [{"MESSAGE": "a"}, {"DELIMITER": {"SIZE": 30}}],
        id="attach-full-form",
    ),
    pytest.param({"0": {"MESSAGE": "x"}}, None, [{"MESSAGE": "x"}], id="attach-short-form"),
    pytest.param(
        {"0": {"IMAGE": {"0": {"LINK": "/a.png", "WIDTH": "100"}}}},
        None,
        [{"IMAGE": [{"LINK": "/a.png", "WIDTH": 100}]}],
        id="attach-image-list",
    ),
    # spec §5.5 LINK "object or array of objects": each object becomes its own block
    pytest.param(
        {"0": {"LINK": {"0": {"LINK": "/a"}, "1": {"LINK": "/b"}}}},
        None,
        [{"LINK": [{"LINK": "/a"}]}, {"LINK": [{"LINK": "/b"}]}],
        id="attach-link-list",
    ),
    pytest.param(
        {"BLOCKS": {"0": {"GRID": {"0": {"NAME": "a", "VALUE": "1"}}}}},
        None,
        [{"GRID": [{"DISPLAY": "BLOCK", "NAME": "a", "VALUE": "1"}]}],
        id="attach-grid-items",
    ),
    # spec §3.4: send KEYBOARD as bracket fields KEYBOARD[BUTTONS][0][TEXT]=…
    pytest.param(
        None,
        {"BUTTONS": {"0": {"TEXT": "Go", "LINK": "/x"}}},
        [button(LINK="/x")],
        id="keyboard-full-form",
    ),
    pytest.param(
        None,
        {"0": {"TEXT": "Go", "LINK": "/x"}, "1": {"TYPE": "NEWLINE"}},
        [button(LINK="/x"), {"TYPE": "NEWLINE"}],
        id="keyboard-short-form",
    ),
    pytest.param(
        None,
        {"0": {"TEXT": "Go", "LINK": "/x", "WIDTH": "120", "DISPLAY": "LINE"}},
        [button(LINK="/x", WIDTH=120, DISPLAY="LINE")],
        id="keyboard-string-numbers",
    ),
]


@pytest.mark.parametrize(("attach", "keyboard", "expected"), FORM_VECTORS)
def test_form_encoded_arrays(attach: Any, keyboard: Any, expected: list[Any]) -> None:
    params = {"CODE": CODE, "USER_ID": "2", "MESSAGE": "hi"}
    if attach is not None:
        params["ATTACH"] = attach
    if keyboard is not None:
        params["KEYBOARD"] = keyboard
    result = call(params)
    assert isinstance(result, payload.ServerMessage), result
    assert result.user_id == 2
    if attach is not None:
        assert result.attach is not None
        assert result.attach["BLOCKS"] == expected
    else:
        assert result.keyboard == {"BUTTONS": expected}


# --- ATTACH blocks (spec §5.5) --------------------------------------------------------------


def blocks_of(*blocks: Any) -> list[Any]:
    """The normalised BLOCKS of a short-form ATTACH; [] when the server refuses it."""
    result = payload.parse_attach(list(blocks), NOW, random_color=lambda: "#123456")
    return [] if result is None else result["BLOCKS"]


BLOCK_VECTORS = [
    # MESSAGE — spec §5.5: "trimmed; empty → dropped"
    pytest.param({"MESSAGE": "  hi  "}, [{"MESSAGE": "hi"}], id="message-trimmed"),
    # spec §5.4/§5.5: "#BR# inside attach MESSAGE ... is converted to [BR]"
    pytest.param({"MESSAGE": "a#BR#b"}, [{"MESSAGE": "a[BR]b"}], id="message-br"),
    pytest.param({"MESSAGE": "\t \n"}, [], id="message-blank-dropped"),
    # spec §5.5 MESSAGE value: string or {"TEXT": …, "AS_DESCRIPTION": "Y"}
    pytest.param(
        {"MESSAGE": {"TEXT": "x", "AS_DESCRIPTION": "Y"}}, [{"MESSAGE": "x"}], id="message-object"
    ),
    pytest.param({"MESSAGE": {"AS_DESCRIPTION": "Y"}}, [], id="message-object-without-text"),
    pytest.param({"MESSAGE": 42}, [{"MESSAGE": "42"}], id="message-number"),
    # spec §5.5 MESSAGE "text (BB codes)": kept as written
    pytest.param({"MESSAGE": "[b]x[/b]"}, [{"MESSAGE": "[b]x[/b]"}], id="message-bb-codes"),
    # LINK — spec §5.5: LINK (http://, https:// or /path) required
    pytest.param(
        {"LINK": {"LINK": "https://e.com"}}, [{"LINK": [{"LINK": "https://e.com"}]}], id="link"
    ),
    pytest.param({"LINK": {"LINK": "ftp://e.com"}}, [], id="link-ftp-dropped"),
    # spec §5.5: "URLs everywhere must match ^(/|https?://)" (case-sensitive)
    pytest.param({"LINK": {"LINK": "HTTPS://E.COM"}}, [], id="link-upper-scheme-dropped"),
    # spec §5.5 LINK normalisation: "NAME newline→space"
    pytest.param(
        {"LINK": {"LINK": "/path", "NAME": " a\nb "}},
        [{"LINK": [{"NAME": "a b", "LINK": "/path"}]}],
        id="link-name-newline",
    ),
    # spec §5.5 LINK: WIDTH, HEIGHT "ints > 0, only with PREVIEW"
    pytest.param(
        {"LINK": {"LINK": "/a", "PREVIEW": "/p.png", "WIDTH": "100", "HEIGHT": 0}},
        [{"LINK": [{"LINK": "/a", "PREVIEW": "/p.png", "WIDTH": 100}]}],
        id="link-preview-size",
    ),
    pytest.param(
        {"LINK": {"LINK": "/a", "WIDTH": 10}}, [{"LINK": [{"LINK": "/a"}]}], id="link-width-alone"
    ),
    # spec §5.5 LINK: HTML wins (in the source, over PREVIEW)
    pytest.param(
        {"LINK": {"LINK": "/a", "HTML": "<b>x</b>", "PREVIEW": "/p.png"}},
        [{"LINK": [{"LINK": "/a", "HTML": "<b>x</b>"}]}],
        id="link-html",
    ),
    # spec §5.5 LINK: "or USER_ID/CHAT_ID/NETWORK_ID together with NAME"
    pytest.param(
        {"LINK": {"USER_ID": 5, "NAME": "Bob"}},
        [{"LINK": [{"USER_ID": 5, "NAME": "Bob"}]}],
        id="link-user-id",
    ),
    pytest.param({"LINK": {"USER_ID": 5}}, [], id="link-user-id-without-name"),
    # spec §5.5 LINK "object or array of objects"
    pytest.param(
        {"LINK": [{"LINK": "/a"}, {"LINK": "ftp://b"}, {"LINK": "/c"}]},
        [{"LINK": [{"LINK": "/a"}]}, {"LINK": [{"LINK": "/c"}]}],
        id="link-list",
    ),
    # spec §5.5: "Unknown keys are ignored"
    pytest.param(
        {"LINK": {"LINK": "/a", "DESC": "d", "FOO": 1}},
        [{"LINK": [{"LINK": "/a", "DESC": "d"}]}],
        id="link-unknown-field",
    ),
    # RICH_LINK — spec §5.5: "same as LINK plus EXTRA_IMAGE"
    pytest.param(
        {"RICH_LINK": {"LINK": "https://e.com", "NAME": "n"}},
        [{"RICH_LINK": [{"NAME": "n", "LINK": "https://e.com"}]}],
        id="rich-link",
    ),
    pytest.param(
        {"RICH_LINK": {"LINK": "/a", "PREVIEW": "/p", "EXTRA_IMAGE": "/x"}},
        [{"RICH_LINK": [{"LINK": "/a", "PREVIEW": "/p"}]}],
        id="rich-link-preview-wins",
    ),
    pytest.param(
        {"RICH_LINK": {"LINK": "/a", "EXTRA_IMAGE": "/x"}},
        [{"RICH_LINK": [{"LINK": "/a", "EXTRA_IMAGE": "/x"}]}],
        id="rich-link-extra-image",
    ),
    pytest.param(
        {"RICH_LINK": {"LINK": "/a", "DESC": "a\nb "}},
        [{"RICH_LINK": [{"LINK": "/a", "DESC": "a b"}]}],
        id="rich-link-desc-newline",
    ),
    pytest.param({"RICH_LINK": {"LINK": "javascript:alert(1)"}}, [], id="rich-link-bad-url"),
    pytest.param(
        {"RICH_LINK": {"CHAT_ID": "7", "NAME": "c"}},
        [{"RICH_LINK": [{"CHAT_ID": 7, "NAME": "c"}]}],
        id="rich-link-chat-id",
    ),
    pytest.param(
        {"RICH_LINK": {"LINK": "/a", "PREVIEW": "/p", "WIDTH": 5}},
        [{"RICH_LINK": [{"LINK": "/a", "PREVIEW": "/p"}]}],
        id="rich-link-no-size",
    ),
    # USER — spec §5.5: NAME (non-blank) required; "adds AVATAR_TYPE (default USER)"
    pytest.param(
        {"USER": {"NAME": "Ann"}}, [{"USER": [{"NAME": "Ann", "AVATAR_TYPE": "USER"}]}], id="user"
    ),
    pytest.param({"USER": {"NAME": "  "}}, [], id="user-blank-name"),
    # spec §5.5 USER: AVATAR_TYPE USER/CHAT/BOT, "one of USER_ID/CHAT_ID/BOT_ID/NETWORK_ID/LINK"
    pytest.param(
        {"USER": {"NAME": "Bot", "BOT_ID": 3}},
        [{"USER": [{"NAME": "Bot", "AVATAR_TYPE": "BOT", "BOT_ID": 3}]}],
        id="user-bot",
    ),
    pytest.param(
        {"USER": {"NAME": "C", "CHAT_ID": 4, "AVATAR_TYPE": "USER"}},
        [{"USER": [{"NAME": "C", "AVATAR_TYPE": "USER", "CHAT_ID": 4}]}],
        id="user-explicit-avatar-type",
    ),
    pytest.param(
        {"USER": {"NAME": "A", "LINK": "https://x", "USER_ID": 9}},
        [{"USER": [{"NAME": "A", "AVATAR_TYPE": "USER", "USER_ID": 9}]}],
        id="user-one-identity",
    ),
    pytest.param(
        {"USER": {"NAME": "A", "AVATAR": "ftp://x", "AVATAR_TYPE": "ROBOT"}},
        [{"USER": [{"NAME": "A", "AVATAR_TYPE": "USER"}]}],
        id="user-bad-avatar",
    ),
    pytest.param(
        {"USER": {"NAME": "A", "AVATAR": "/a.png", "LINK": "/u"}},
        [{"USER": [{"NAME": "A", "AVATAR_TYPE": "USER", "LINK": "/u", "AVATAR": "/a.png"}]}],
        id="user-avatar-link",
    ),
    # spec §5.5 "Text in NAME fields has line breaks replaced by spaces" (USER NAME not trimmed)
    pytest.param(
        {"USER": {"NAME": " A\nB "}},
        [{"USER": [{"NAME": " A B ", "AVATAR_TYPE": "USER"}]}],
        id="user-name-newline",
    ),
    pytest.param(
        {"USER": [{"NAME": "a"}, {"NAME": "b"}]},
        [
            {"USER": [{"NAME": "a", "AVATAR_TYPE": "USER"}]},
            {"USER": [{"NAME": "b", "AVATAR_TYPE": "USER"}]},
        ],
        id="user-list",
    ),
    # GRID — spec §5.5: DISPLAY default BLOCK
    pytest.param(
        {"GRID": [{"NAME": "a", "VALUE": "b"}]},
        [{"GRID": [{"DISPLAY": "BLOCK", "NAME": "a", "VALUE": "b"}]}],
        id="grid",
    ),
    # spec §5.5 GRID: items with blank NAME and VALUE dropped unless LINE; empty grid → dropped
    pytest.param({"GRID": [{"NAME": "", "VALUE": " "}]}, [], id="grid-blank-item"),
    pytest.param(
        {"GRID": [{"DISPLAY": "LINE"}]},
        [{"GRID": [{"DISPLAY": "LINE", "NAME": "", "VALUE": ""}]}],
        id="grid-blank-line-kept",
    ),
    # spec §5.5 GRID: legacy COLUMN→ROW, CARD→LINE; anything else → BLOCK
    pytest.param(
        {
            "GRID": [
                {"DISPLAY": "COLUMN", "NAME": "a", "VALUE": "1"},
                {"DISPLAY": "CARD", "NAME": "b", "VALUE": "2"},
                {"DISPLAY": "FOO", "NAME": "c", "VALUE": "3"},
                {"DISPLAY": "TABLE", "NAME": "d", "VALUE": "4"},
            ]
        },
        [
            {
                "GRID": [
                    {"DISPLAY": "ROW", "NAME": "a", "VALUE": "1"},
                    {"DISPLAY": "LINE", "NAME": "b", "VALUE": "2"},
                    {"DISPLAY": "BLOCK", "NAME": "c", "VALUE": "3"},
                    {"DISPLAY": "TABLE", "NAME": "d", "VALUE": "4"},
                ]
            }
        ],
        id="grid-display-mapping",
    ),
    # spec §5.5 GRID: the blank test sees DISPLAY as sent, so a blank CARD is dropped
    pytest.param({"GRID": [{"DISPLAY": "CARD"}]}, [], id="grid-blank-card"),
    # spec §5.5: NAME newline → space; #BR# in GRID VALUE → [BR]
    pytest.param(
        {"GRID": [{"NAME": "x\ny", "VALUE": " a#BR#b "}]},
        [{"GRID": [{"DISPLAY": "BLOCK", "NAME": "x y", "VALUE": "a[BR]b"}]}],
        id="grid-text",
    ),
    # spec §5.5 GRID fields: WIDTH, HEIGHT, COLOR (#hex), LINK, USER_ID, CHAT_ID
    pytest.param(
        {
            "GRID": [
                {
                    "NAME": "a",
                    "VALUE": "b",
                    "COLOR": "#zzz",
                    "WIDTH": "50",
                    "HEIGHT": -1,
                    "USER_ID": 0,
                    "CHAT_ID": "3",
                    "LINK": "/x",
                }
            ]
        },
        [
            {
                "GRID": [
                    {
                        "DISPLAY": "BLOCK",
                        "NAME": "a",
                        "VALUE": "b",
                        "WIDTH": 50,
                        "CHAT_ID": 3,
                        "LINK": "/x",
                    }
                ]
            }
        ],
        id="grid-fields",
    ),
    # spec §5.5 GRID COLOR_TOKEN is "(doc)": the server keeps COLOR, not the token
    pytest.param(
        {"GRID": [{"NAME": "a", "VALUE": "b", "COLOR": "#ABC", "COLOR_TOKEN": "alert"}]},
        [{"GRID": [{"DISPLAY": "BLOCK", "NAME": "a", "VALUE": "b", "COLOR": "#ABC"}]}],
        id="grid-color",
    ),
    # spec §5.5 GRID value is an "array of items": a lone item is not one
    pytest.param({"GRID": {"NAME": "a", "VALUE": "b"}}, [], id="grid-object"),
    pytest.param(
        {"GRID": [{"NAME": "only name"}]},
        [{"GRID": [{"DISPLAY": "BLOCK", "NAME": "only name", "VALUE": ""}]}],
        id="grid-name-only",
    ),
    # IMAGE — spec §5.5: LINK (URL) required; "items without valid LINK dropped"
    pytest.param(
        {"IMAGE": {"LINK": "https://i.png"}}, [{"IMAGE": [{"LINK": "https://i.png"}]}], id="image"
    ),
    pytest.param(
        {
            "IMAGE": [
                {"LINK": "/i.png", "NAME": " n ", "PREVIEW": "/p.png", "WIDTH": 10, "HEIGHT": "20"}
            ]
        },
        [
            {
                "IMAGE": [
                    {"NAME": "n", "LINK": "/i.png", "WIDTH": 10, "HEIGHT": 20, "PREVIEW": "/p.png"}
                ]
            }
        ],
        id="image-fields",
    ),
    pytest.param(
        {"IMAGE": [{"LINK": "ftp://x"}, {"LINK": "/ok.png"}]},
        [{"IMAGE": [{"LINK": "/ok.png"}]}],
        id="image-bad-item-dropped",
    ),
    pytest.param({"IMAGE": [{"NAME": "x"}]}, [], id="image-no-link"),
    pytest.param({"IMAGE": "https://i.png"}, [], id="image-string"),
    pytest.param(
        {"IMAGE": [{"LINK": "/a.png", "NAME": " ", "PREVIEW": "data:x"}]},
        [{"IMAGE": [{"LINK": "/a.png"}]}],
        id="image-blank-name-bad-preview",
    ),
    # FILE — spec §5.5: LINK (URL) required; NAME, SIZE (bytes, int)
    pytest.param({"FILE": {"LINK": "/f.pdf"}}, [{"FILE": [{"LINK": "/f.pdf"}]}], id="file"),
    pytest.param(
        {"FILE": [{"LINK": "/f.pdf", "NAME": "a\nb.pdf", "SIZE": "1500"}]},
        [{"FILE": [{"LINK": "/f.pdf", "NAME": "a b.pdf", "SIZE": 1500}]}],
        id="file-fields",
    ),
    pytest.param(
        {"FILE": [{"LINK": "/f.pdf", "SIZE": -1, "NAME": ""}]},
        [{"FILE": [{"LINK": "/f.pdf"}]}],
        id="file-bad-size-blank-name",
    ),
    pytest.param({"FILE": [{"LINK": "f.pdf"}]}, [], id="file-relative-link"),
    pytest.param(
        {"FILE": [{"LINK": "/a"}, "junk", {"LINK": "/b"}]},
        [{"FILE": [{"LINK": "/a"}, {"LINK": "/b"}]}],
        id="file-junk-item",
    ),
    # DELIMITER — spec §5.5: "SIZE (px, default/invalid → 200), COLOR (#hex); always valid"
    pytest.param({"DELIMITER": {}}, [{"DELIMITER": {"SIZE": 200}}], id="delimiter-default"),
    pytest.param({"DELIMITER": {"SIZE": 0}}, [{"DELIMITER": {"SIZE": 200}}], id="delimiter-zero"),
    pytest.param({"DELIMITER": {"SIZE": "50"}}, [{"DELIMITER": {"SIZE": 50}}], id="delimiter-50"),
    pytest.param(
        {"DELIMITER": {"SIZE": -5, "COLOR": "#c6c6c6"}},
        [{"DELIMITER": {"SIZE": 200, "COLOR": "#c6c6c6"}}],
        id="delimiter-color",
    ),
    pytest.param(
        {"DELIMITER": {"COLOR": "red"}}, [{"DELIMITER": {"SIZE": 200}}], id="delimiter-bad-color"
    ),
    pytest.param({"DELIMITER": "x"}, [{"DELIMITER": {"SIZE": 200}}], id="delimiter-string"),
    pytest.param({"DELIMITER": None}, [], id="delimiter-null-is-unset"),
    # spec §5.5 "exactly one key naming its type": with several, the server's order decides
    pytest.param(
        {"MESSAGE": "a", "LINK": {"LINK": "/x"}}, [{"LINK": [{"LINK": "/x"}]}], id="two-keys"
    ),
]


@pytest.mark.parametrize(("block", "expected"), BLOCK_VECTORS)
def test_block_normalisation(block: Any, expected: list[Any]) -> None:
    assert blocks_of(block) == expected


def test_as_description_sets_description() -> None:
    # spec §5.5 DESCRIPTION: "a MESSAGE block with AS_DESCRIPTION: "Y" sets it"
    yes = payload.parse_attach([{"MESSAGE": {"TEXT": " x ", "AS_DESCRIPTION": "Y"}}], NOW)
    no = payload.parse_attach([{"MESSAGE": {"TEXT": "x", "AS_DESCRIPTION": "N"}}], NOW)
    assert yes is not None
    assert yes["DESCRIPTION"] == "x"
    assert no is not None
    assert no["DESCRIPTION"] == ""


@pytest.mark.parametrize(
    ("color", "expected"),
    [
        # spec §5.5 COLOR: "#RGB or #RRGGBB, or TRANSPARENT; an invalid value becomes a random
        # colour; absent → chat default (no colour key)"
        pytest.param("#29619b", "#29619b", id="six-digits"),
        pytest.param("#ABC", "#ABC", id="three-digits"),
        pytest.param("blue", "#123456", id="invalid-random"),
        pytest.param("#12345", "#123456", id="five-digits-random"),
        pytest.param("TRANSPARENT", "transparent", id="transparent"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_attach_color(color: str | None, expected: str | None) -> None:
    attach: dict[str, Any] = {"BLOCKS": [{"MESSAGE": "x"}]}
    if color is not None:
        attach["COLOR"] = color
    result = payload.parse_attach(attach, NOW, random_color=lambda: "#123456")
    assert result is not None
    assert result.get("COLOR") == expected


def test_default_random_color_is_a_hex_colour() -> None:
    result = payload.parse_attach({"COLOR": "nope", "BLOCKS": [{"MESSAGE": "x"}]}, NOW)
    assert result is not None
    assert len(result["COLOR"]) == 7
    assert result["COLOR"].startswith("#")
    int(result["COLOR"][1:], 16)


@pytest.mark.parametrize(
    "value",
    [
        # spec §5.5 "Accepted shapes": full form, short form, a JSON string of either
        pytest.param({"ID": 5, "BLOCKS": [{"MESSAGE": "x"}]}, id="full-form-id-ignored"),
        pytest.param([{"MESSAGE": "x"}], id="short-form"),
        pytest.param('{"BLOCKS":[{"MESSAGE":"x"}]}', id="json-full-form"),
        pytest.param('[{"MESSAGE":"x"}]', id="json-short-form"),
        # "decoded with Bitrix's lenient JS-object parser"
        pytest.param("{BLOCKS: [{MESSAGE: 'x'}]}", id="js-object-literal"),
        pytest.param("[{'MESSAGE': 'x',},]", id="js-trailing-commas"),
        # the examined parser reads a top-level DESCRIPTION but does not apply it
        pytest.param({"DESCRIPTION": "d", "BLOCKS": [{"MESSAGE": "x"}]}, id="description-unused"),
    ],
)
def test_attach_shapes(value: Any) -> None:
    assert payload.parse_attach(value, NOW) == {
        "ID": NOW,
        "BLOCKS": [{"MESSAGE": "x"}],
        "DESCRIPTION": "",
    }


@pytest.mark.parametrize(
    ("text", "chars", "size_in_bytes"),
    [
        # spec §5.5 "How the size limit is measured"; 60 = the hand-counted envelope
        pytest.param("a/b", 64, 64, id="slash-escaped-in-both"),
        pytest.param("я", 61, 66, id="cyrillic"),
        pytest.param('"', 62, 66, id="quote"),
        pytest.param("<", 61, 66, id="lt"),
        pytest.param("&", 61, 66, id="amp"),
        pytest.param("'", 61, 66, id="apostrophe"),
        pytest.param("a\nb", 64, 64, id="newline"),
        pytest.param("😀", 61, 72, id="emoji-surrogate-pair"),
        pytest.param("\\", 62, 62, id="backslash"),
    ],
)
def test_attach_size_rules(text: str, chars: int, size_in_bytes: int) -> None:
    normalised = {"ID": NOW, "BLOCKS": [{"MESSAGE": text}], "DESCRIPTION": ""}
    assert payload.attach_size(normalised, "chars") == chars
    assert payload.attach_size(normalised, "bytes") == size_in_bytes


def test_spec_example_attach() -> None:
    # spec §5.5 "Example (full form)", normalised by hand
    example = {
        "COLOR": "#29619b",
        "BLOCKS": [
            {"MESSAGE": "Release [b]2.4[/b] is out"},
            {"DELIMITER": {"SIZE": 200, "COLOR": "#c6c6c6"}},
            {
                "GRID": [
                    {"DISPLAY": "LINE", "NAME": "Version", "VALUE": "2.4"},
                    {"DISPLAY": "LINE", "NAME": "Date", "VALUE": "2026-11-25"},
                ]
            },
            {
                "LINK": {
                    "NAME": "Changelog",
                    "LINK": "https://example.com/changelog",
                    "DESC": "What changed",
                }
            },
            {
                "IMAGE": [
                    {
                        "LINK": "https://example.com/a.png",
                        "PREVIEW": "https://example.com/a_s.png",
                        "WIDTH": 1000,
                        "HEIGHT": 638,
                    }
                ]
            },
            {
                "FILE": [
                    {"LINK": "https://example.com/guide.pdf", "NAME": "guide.pdf", "SIZE": 1500000}
                ]
            },
            {
                "USER": {
                    "NAME": "Support team",
                    "AVATAR": "https://example.com/logo.png",
                    "LINK": "https://example.com",
                }
            },
        ],
    }
    assert payload.parse_attach(example, NOW) == {
        "ID": NOW,
        "BLOCKS": [
            {"MESSAGE": "Release [b]2.4[/b] is out"},
            {"DELIMITER": {"SIZE": 200, "COLOR": "#c6c6c6"}},
            {
                "GRID": [
                    {"DISPLAY": "LINE", "NAME": "Version", "VALUE": "2.4"},
                    {"DISPLAY": "LINE", "NAME": "Date", "VALUE": "2026-11-25"},
                ]
            },
            {
                "LINK": [
                    {
                        "NAME": "Changelog",
                        "LINK": "https://example.com/changelog",
                        "DESC": "What changed",
                    }
                ]
            },
            {
                "IMAGE": [
                    {
                        "LINK": "https://example.com/a.png",
                        "WIDTH": 1000,
                        "HEIGHT": 638,
                        "PREVIEW": "https://example.com/a_s.png",
                    }
                ]
            },
            {
                "FILE": [
                    {"LINK": "https://example.com/guide.pdf", "NAME": "guide.pdf", "SIZE": 1500000}
                ]
            },
            {
                "USER": [
                    {
                        "NAME": "Support team",
                        "AVATAR_TYPE": "USER",
                        "LINK": "https://example.com",
                        "AVATAR": "https://example.com/logo.png",
                    }
                ]
            },
        ],
        "DESCRIPTION": "",
        "COLOR": "#29619b",
    }


# --- KEYBOARD buttons (spec §5.6) ------------------------------------------------------------


def go(**fields: Any) -> list[dict[str, Any]]:
    """A keyboard (short form) of one button with TEXT "Go"."""
    return [{"TEXT": "Go", **fields}]


BUTTON_VECTORS = [
    # TEXT — spec §5.6: "required, non-blank string (trimmed) — otherwise the button is dropped"
    pytest.param([{"TEXT": "  Go  ", "LINK": "/x"}], None, [button(LINK="/x")], id="text-trimmed"),
    pytest.param([{"TEXT": "   ", "LINK": "/x"}], None, None, id="text-blank"),
    pytest.param([{"TEXT": "0", "LINK": "/x"}], None, None, id="text-zero-is-empty"),
    pytest.param([{"TEXT": 5, "LINK": "/x"}], None, None, id="text-not-string"),
    pytest.param([{"LINK": "/x"}], None, None, id="text-missing"),
    # LINK — spec §5.6: "http(s)://… or /path; HTML-escaped on storage"
    pytest.param(go(LINK="/docs"), None, [button(LINK="/docs")], id="link-path"),
    pytest.param(
        go(LINK="https://e.com/?a=1&b=2"),
        None,
        [button(LINK="https://e.com/?a=1&amp;b=2")],
        id="link-escaped-amp",
    ),
    pytest.param(
        go(LINK='https://e.com/"x"<y>'),
        None,
        [button(LINK="https://e.com/&quot;x&quot;&lt;y&gt;")],
        id="link-escaped-quotes",
    ),
    pytest.param(go(LINK="ftp://e.com"), None, None, id="link-ftp"),
    pytest.param(go(LINK="Https://e.com"), None, None, id="link-case"),
    # spec §5.6: "Exactly one action field is used, in priority LINK > … > ACTION"
    pytest.param(
        go(LINK="/x", ACTION="PUT", ACTION_VALUE="v"), None, [button(LINK="/x")], id="link-first"
    ),
    # ACTION — spec §5.6: PUT, SEND, COPY, CALL, DIALOG (+LIVECHAT, HELP); value non-blank
    pytest.param(
        go(ACTION="PUT", ACTION_VALUE="v"),
        None,
        [button(ACTION="PUT", ACTION_VALUE="v")],
        id="action-put",
    ),
    pytest.param(
        go(ACTION="HELP", ACTION_VALUE=" v "),
        None,
        [button(ACTION="HELP", ACTION_VALUE=" v ")],
        id="action-help-value-raw",
    ),
    pytest.param(go(ACTION="put", ACTION_VALUE="v"), None, None, id="action-lower-case"),
    pytest.param(go(ACTION="SEND", ACTION_VALUE=" "), None, None, id="action-blank-value"),
    pytest.param(go(ACTION="OPEN", ACTION_VALUE="v"), None, None, id="action-unknown"),
    pytest.param(
        go(ACTION="SEND", ACTION_VALUE="x", COMMAND="c"),
        5,
        [button(BOT_ID=5, ACTION="SEND", ACTION_VALUE="x")],
        id="action-before-command",
    ),
    # COMMAND — spec §5.6: "only kept when the keyboard has a BOT_ID > 0; leading / stripped"
    pytest.param(
        go(COMMAND="/start"),
        5,
        [button(BOT_ID=5, COMMAND="start", COMMAND_PARAMS="")],
        id="command",
    ),
    pytest.param(go(COMMAND="/start"), None, None, id="command-without-bot"),
    pytest.param(go(COMMAND="/start"), "0", None, id="command-bot-zero"),
    pytest.param(
        go(COMMAND="x", COMMAND_PARAMS="p"),
        5,
        [button(BOT_ID=5, COMMAND="x", COMMAND_PARAMS="p")],
        id="command-params",
    ),
    pytest.param(go(COMMAND="  "), 5, None, id="command-blank"),
    # APP_ID — spec §5.6: "opens an app in chat (deprecated)"; priority APP_ID > ACTION
    pytest.param(go(APP_ID="12"), None, [button(APP_ID=12)], id="app-id"),
    pytest.param(
        go(APP_ID=12, APP_PARAMS="p"), None, [button(APP_ID=12, APP_PARAMS="p")], id="app-params"
    ),
    pytest.param(go(APP_ID=3, APP_PARAMS=" "), None, [button(APP_ID=3)], id="app-blank-params"),
    pytest.param(go(APP_ID="0"), None, None, id="app-id-zero"),
    pytest.param(
        go(APP_ID=3, ACTION="PUT", ACTION_VALUE="v"), None, [button(APP_ID=3)], id="app-id-first"
    ),
    pytest.param(go(APP_ID=3, LINK="/x"), None, [button(LINK="/x")], id="link-before-app-id"),
    # FUNCTION — spec §5.6: "JS callback; ignored unless internally enabled → dropped"
    pytest.param(go(LINK="/x", FUNCTION="f"), None, None, id="function-drops-button"),
    pytest.param(go(FUNCTION="f"), None, None, id="function-alone"),
    pytest.param(go(LINK="/x", FUNCTION=""), None, None, id="function-empty-still-set"),
    pytest.param(go(LINK="/x", FUNCTION=None), None, [button(LINK="/x")], id="function-null"),
    pytest.param(
        [{"TEXT": "Go", "FUNCTION": "f"}, {"TEXT": "Go", "LINK": "/x"}],
        None,
        [button(LINK="/x")],
        id="function-others-kept",
    ),
    # TYPE — spec §5.6: "NEWLINE → row separator ({"TYPE": "NEWLINE"}), no other fields needed"
    pytest.param(
        [{"TEXT": "a", "LINK": "/a"}, {"TYPE": "NEWLINE"}, {"TEXT": "b", "LINK": "/b"}],
        None,
        [button(TEXT="a", LINK="/a"), {"TYPE": "NEWLINE"}, button(TEXT="b", LINK="/b")],
        id="newline-between",
    ),
    pytest.param(
        [{"TYPE": "NEWLINE", "TEXT": "x", "LINK": "/x"}],
        None,
        [{"TYPE": "NEWLINE"}],
        id="newline-other-fields-ignored",
    ),
    # spec §5.6 "If no button survives": a line break is kept, so the source accepts this
    pytest.param([{"TYPE": "NEWLINE"}], None, [{"TYPE": "NEWLINE"}], id="newline-only"),
    pytest.param([{"TYPE": "newline"}], None, None, id="newline-lower-case"),
    # spec §5.6 TYPE "NEWLINE → row separator": a separator is kept wherever it stands
    pytest.param(
        [{"TYPE": "NEWLINE"}, {"TEXT": "a", "LINK": "/a"}],
        None,
        [{"TYPE": "NEWLINE"}, button(TEXT="a", LINK="/a")],
        id="newline-first",
    ),
    pytest.param(
        [{"TEXT": "a", "LINK": "/a"}, {"TYPE": "NEWLINE"}],
        None,
        [button(TEXT="a", LINK="/a"), {"TYPE": "NEWLINE"}],
        id="newline-last",
    ),
    pytest.param(
        [{"TEXT": "a", "LINK": "/a"}, {"TYPE": "NEWLINE"}, {"TYPE": "NEWLINE"}],
        None,
        [button(TEXT="a", LINK="/a"), {"TYPE": "NEWLINE"}, {"TYPE": "NEWLINE"}],
        id="newline-twice",
    ),
    # spec §5.6 accepted shapes: the full form `{"BUTTONS": [ … ]}` holds separators too
    pytest.param(
        {"BUTTONS": [{"TEXT": "a", "LINK": "/a"}, {"TYPE": "NEWLINE"}]},
        None,
        [button(TEXT="a", LINK="/a"), {"TYPE": "NEWLINE"}],
        id="newline-full-form",
    ),
    # spec §5.6 TEXT "otherwise the button is dropped": the separator after it stays
    pytest.param(
        [{"TEXT": " ", "LINK": "/a"}, {"TYPE": "NEWLINE"}, {"TEXT": "b", "LINK": "/b"}],
        None,
        [{"TYPE": "NEWLINE"}, button(TEXT="b", LINK="/b")],
        id="newline-after-a-dropped-button",
    ),
    # spec §5.6 TYPE "({"TYPE": "NEWLINE"}), no other fields needed": BOT_ID is not added
    pytest.param(
        [{"TYPE": "NEWLINE"}, {"TEXT": "a", "LINK": "/a"}],
        5,
        [{"TYPE": "NEWLINE"}, button(BOT_ID=5, TEXT="a", LINK="/a")],
        id="newline-with-a-bot-id",
    ),
    # spec §5.6 shapes "may also carry `COLORS` defaults" (button fields) and TYPE "no other
    # fields needed": a separator takes no colour
    pytest.param(
        {"BUTTONS": [{"TYPE": "NEWLINE"}], "COLORS": {"BG_COLOR": "#111"}},
        None,
        [{"TYPE": "NEWLINE"}],
        id="newline-no-color-defaults",
    ),
    pytest.param(
        [{"TYPE": "BUTTON", "TEXT": "Go", "LINK": "/x"}],
        None,
        [button(LINK="/x")],
        id="type-button",
    ),
    # colours — spec §5.6: "#RGB/#RRGGBB; invalid → ignored"; keyboard COLORS give defaults
    pytest.param(
        go(LINK="/x", BG_COLOR="#29619b", TEXT_COLOR="#fff"),
        None,
        [button(LINK="/x", BG_COLOR="#29619b", TEXT_COLOR="#fff")],
        id="colors",
    ),
    pytest.param(
        go(LINK="/x", BG_COLOR="blue", TEXT_COLOR="#1234"),
        None,
        [button(LINK="/x")],
        id="colors-invalid",
    ),
    pytest.param(
        go(LINK="/x", OFF_BG_COLOR="#000", OFF_TEXT_COLOR="#FFFFFF"),
        None,
        [button(LINK="/x", OFF_BG_COLOR="#000", OFF_TEXT_COLOR="#FFFFFF")],
        id="colors-off",
    ),
    pytest.param(
        {"BUTTONS": go(LINK="/x"), "COLORS": {"BG_COLOR": "#111", "TEXT_COLOR": "bad"}},
        None,
        [button(LINK="/x", BG_COLOR="#111")],
        id="colors-defaults",
    ),
    pytest.param(
        {"BUTTONS": go(LINK="/x", BG_COLOR="#222"), "COLORS": {"BG_COLOR": "#111"}},
        None,
        [button(LINK="/x", BG_COLOR="#222")],
        id="colors-own-wins",
    ),
    # spec §5.6 BG_COLOR_TOKEN is "per current docs": the examined parser does not keep it
    pytest.param(
        go(LINK="/x", BG_COLOR_TOKEN="primary"), None, [button(LINK="/x")], id="color-token"
    ),
    # DISPLAY — spec §5.6: "LINE (inline) or BLOCK (full width, default)"
    pytest.param(
        go(LINK="/x", DISPLAY="LINE"), None, [button(LINK="/x", DISPLAY="LINE")], id="d-line"
    ),
    pytest.param(go(LINK="/x", DISPLAY="BLOCK"), None, [button(LINK="/x")], id="display-block"),
    pytest.param(go(LINK="/x", DISPLAY="line"), None, [button(LINK="/x")], id="display-lower"),
    pytest.param(go(LINK="/x", DISPLAY="INLINE"), None, [button(LINK="/x")], id="display-unknown"),
    pytest.param(go(LINK="/x"), None, [button(LINK="/x")], id="display-default"),
    # WIDTH — spec §5.6: "px, int > 0"
    pytest.param(go(LINK="/x", WIDTH="100"), None, [button(LINK="/x", WIDTH=100)], id="width"),
    pytest.param(go(LINK="/x", WIDTH=50.9), None, [button(LINK="/x", WIDTH=50)], id="width-float"),
    pytest.param(go(LINK="/x", WIDTH=0), None, [button(LINK="/x")], id="width-zero"),
    pytest.param(go(LINK="/x", WIDTH=-1), None, [button(LINK="/x")], id="width-negative"),
    pytest.param(go(LINK="/x", WIDTH="abc"), None, [button(LINK="/x")], id="width-text"),
    # BLOCK — spec §5.6: "Y → disable after press; default N"
    pytest.param(go(LINK="/x", BLOCK="Y"), None, [button(LINK="/x", BLOCK="Y")], id="block-y"),
    pytest.param(go(LINK="/x", BLOCK="N"), None, [button(LINK="/x")], id="block-n"),
    pytest.param(go(LINK="/x", BLOCK="y"), None, [button(LINK="/x")], id="block-lower"),
    pytest.param(go(LINK="/x", BLOCK="yes"), None, [button(LINK="/x")], id="block-yes"),
    pytest.param(go(LINK="/x", BLOCK=True), None, [button(LINK="/x")], id="block-true"),
    # DISABLED — spec §5.6: "Y/N (default N)"
    pytest.param(
        go(LINK="/x", DISABLED="Y"), None, [button(LINK="/x", DISABLED="Y")], id="disabled-y"
    ),
    pytest.param(go(LINK="/x", DISABLED="N"), None, [button(LINK="/x")], id="disabled-n"),
    pytest.param(go(LINK="/x", DISABLED="true"), None, [button(LINK="/x")], id="disabled-true"),
    pytest.param(go(LINK="/x", DISABLED=1), None, [button(LINK="/x")], id="disabled-one"),
    pytest.param(go(LINK="/x"), None, [button(LINK="/x")], id="disabled-default"),
    # CONTEXT — spec §5.6: "MOBILE, DESKTOP, ALL (default)"
    pytest.param(
        go(LINK="/x", CONTEXT="MOBILE"), None, [button(LINK="/x", CONTEXT="MOBILE")], id="ctx-mob"
    ),
    pytest.param(
        go(LINK="/x", CONTEXT="DESKTOP"), None, [button(LINK="/x", CONTEXT="DESKTOP")], id="ctx-pc"
    ),
    pytest.param(go(LINK="/x", CONTEXT="ALL"), None, [button(LINK="/x")], id="context-all"),
    pytest.param(go(LINK="/x", CONTEXT="mobile"), None, [button(LINK="/x")], id="context-lower"),
    pytest.param(go(LINK="/x", CONTEXT="TABLET"), None, [button(LINK="/x")], id="context-unknown"),
    # shapes — spec §5.6: full form, bare array; a string is not decoded
    pytest.param({"BUTTONS": go(LINK="/x")}, None, [button(LINK="/x")], id="full-form"),
    pytest.param('[{"TEXT":"Go","LINK":"/x"}]', None, None, id="string-not-decoded"),
    pytest.param(
        {"BUTTONS": go(LINK="/x"), "VOTE": "Y"}, None, [button(LINK="/x", VOTE="Y")], id="vote"
    ),
    pytest.param(["junk", go(LINK="/x")[0]], None, [button(LINK="/x")], id="junk-entry-dropped"),
]


@pytest.mark.parametrize(("keyboard", "bot_id", "expected"), BUTTON_VECTORS)
def test_button_normalisation(keyboard: Any, bot_id: Any, expected: list[Any] | None) -> None:
    result = payload.parse_keyboard(keyboard, bot_id)
    assert result == (None if expected is None else {"BUTTONS": expected})


def test_server_refusal_statuses() -> None:
    # spec §5.3: "All errors below are HTTP 400 except WRONG_AUTH_TYPE (403)"
    assert payload.server_refusal("WRONG_AUTH_TYPE") == payload.ServerRefusal(
        "WRONG_AUTH_TYPE", "Access for this method not allowed by session authorization.", 403
    )
    assert payload.server_refusal("WRONG_REQUEST") == payload.ServerRefusal(
        "WRONG_REQUEST", "Message isn't added", 400
    )
    assert payload.server_refusal("IMBOT_ERROR").description == "Module IMBOT is not installed"
