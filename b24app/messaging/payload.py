"""Message payloads for `imopenlines.network.message.add`: rules, policy and builders.

Pure module: no ORM, no HTTP, and no Django beyond lazy translations. Three layers:

1. The Bitrix server's own rules (spec §5.2-§5.7), reproduced closely enough that the local
   sandbox portal imports this module and answers exactly like a real portal would:
   `server_accept`, `parse_attach`, `parse_keyboard`, `attach_size`.
2. The app's stricter policy on top (`validate_params`): 30 000-byte caps measured with the
   older byte-counting rule, link-only keyboards, and nothing that any server version would
   silently drop. Whatever it accepts, every server version accepts.
3. Typed, frozen builder objects for the composer (`Attach`, blocks, `Keyboard`, buttons,
   `Payload`) with `to_bitrix()` / `from_bitrix()`.

Server behaviour is described from the PHP source (`Rest::networkMessageAdd`,
`CIMMessageParamAttach`, `Im\\Bot\\Keyboard`, newest release) as summarised in the spec; where
PHP's loose typing matters (`isset`, `empty`, `intval`, `==` against a literal) the helpers
below reproduce it, because the sandbox must refuse and accept exactly what a portal does.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Self, TypeAlias, TypeVar

from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


__all__ = [
    "ATTACH_SIZE_LIMIT",
    "POLICY_SIZE_LIMIT",
    "SERVER_ERRORS",
    "Attach",
    "Block",
    "DelimiterBlock",
    "FileBlock",
    "FileItem",
    "GridBlock",
    "GridItem",
    "ImageBlock",
    "ImageItem",
    "Keyboard",
    "LinkBlock",
    "LinkButton",
    "MessageBlock",
    "MessageText",
    "NewLine",
    "Payload",
    "PayloadError",
    "Problem",
    "RichLinkBlock",
    "ServerMessage",
    "ServerRefusal",
    "UserBlock",
    "attach_size",
    "canonical_error_code",
    "parse_attach",
    "parse_keyboard",
    "server_accept",
    "server_refusal",
    "validate_attach",
    "validate_keyboard",
    "validate_params",
]

SizeRule: TypeAlias = Literal["chars", "bytes"]

#: The server refuses a normalised ATTACH whose JSON is this long or longer (spec §5.5).
ATTACH_SIZE_LIMIT = 60_000
#: The app's own cap for ATTACH and KEYBOARD, in bytes under the older rule (RU docs' "30 KB").
POLICY_SIZE_LIMIT = 30_000

#: error -> error_description, exactly as the server words them (spec §5.3).
SERVER_ERRORS: dict[str, str] = {
    "WRONG_AUTH_TYPE": "Access for this method not allowed by session authorization.",
    "CODE": "You entered an invalid code",
    "IMBOT_ERROR": "Module IMBOT is not installed",
    "NOT_FOUND": "Line not found",
    "USER_ID_EMPTY": "User ID can't be empty",
    "USER_MESSAGE_LIMIT": "You cant send more than one message per week to each user.",
    "MESSAGE_EMPTY": "Message can't be empty",
    "ATTACH_OVERSIZE": "You have exceeded the maximum allowable size of attach",
    "ATTACH_ERROR": "Incorrect attach params",
    "KEYBOARD_ERROR": "Incorrect keyboard params",
    "WRONG_REQUEST": "Message isn't added",
}

# Older names seen on the old RU method page (seed) -> the codes the server really sends.
_LEGACY_CODES = {"CODE_ERROR": "CODE"}

# ---------------------------------------------------------------------------------------------
# Layer 1: the server's rules
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerRefusal:
    """What the portal answers instead of `{"result": true}`."""

    code: str
    description: str
    status: int = 400


@dataclass(frozen=True)
class ServerMessage:
    """A message the portal accepted, with ATTACH and KEYBOARD as the server stores them."""

    code: str
    user_id: int
    message: str
    attach: dict[str, Any] | None
    keyboard: dict[str, Any] | None
    url_preview: bool


def server_refusal(code: str) -> ServerRefusal:
    """The refusal for a known server error code, with its exact description and status."""
    status = 403 if code == "WRONG_AUTH_TYPE" else 400
    return ServerRefusal(code=code, description=SERVER_ERRORS[code], status=status)


def canonical_error_code(code: str) -> str:
    """Map an error code from a reply (or from old docs) onto the code the app works with.

    The seed's `CODE_ERROR` becomes `CODE`; `KEYBOARD_OVERSIZE` (seed only, never sent by the
    server) stays as the app's own keyboard-cap code. Stray whitespace and case are ignored
    (the seed table spells `ATTACH_ERROR ` with a trailing space).
    """
    cleaned = code.strip().upper()
    return _LEGACY_CODES.get(cleaned, cleaned)


# --- PHP semantics ----------------------------------------------------------------------------

# PHP's trim() strips only these, not every Unicode space.
_PHP_TRIM = " \t\n\r\0\x0b"
# preg_replace('/\R/u', ' ', ...): any line-break sequence, CRLF counted once.
_NEWLINE_RE = re.compile("\r\n|[\n\x0b\x0c\r\x85\u2028\u2029]")
# The server's URL test: preg_match('#^(?:/|https?://)#', ...), case-sensitive.
_URL_RE = re.compile(r"(?:/|https?://)")
# The server's colour test: #RGB or #RRGGBB.
_COLOR_RE = re.compile(r"#[a-fA-F0-9]{3}(?:[a-fA-F0-9]{3})?")
# A numeric prefix as PHP's (int) cast reads it from a string.
_NUMERIC_PREFIX_RE = re.compile(r"[ \t\n\r\v\f]*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)")
# Array keys PHP turns into integers.
_INT_KEY_RE = re.compile(r"0|-?[1-9][0-9]*")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_DEPTH = 256


def _phpify(value: Any, depth: int = 0) -> Any:
    """Turn decoded request data into the shape PHP sees.

    A PHP array is both a list and a map: form-encoded `A[0]=x&A[1]=y` and JSON `{"0": x}`
    both arrive as integer-keyed arrays, so a dict whose keys are all integers is read as a
    list in key order. Types JSON cannot carry become null.
    """
    if depth > _MAX_DEPTH:
        return None
    cls = type(value)
    if cls in _SCALARS:
        return value
    if depth == _MAX_DEPTH:
        return _phpify_general(value, depth)  # the children are past the limit
    child = depth + 1
    if cls is dict:
        items = [
            (
                k if type(k) is str and k[:1] not in _INT_KEY_START else _php_key(k),
                v if type(v) in _SCALARS else _phpify(v, child),
            )
            for k, v in value.items()
        ]
        for k, _v in items:
            if not isinstance(k, int):
                return {str(k): v for k, v in items}
        return [v for _k, v in items]
    if cls is list:
        return [v if type(v) in _SCALARS else _phpify(v, child) for v in value]
    return _phpify_general(value, depth)


def _phpify_general(value: Any, depth: int) -> Any:
    # Any type, one level at a time (the children go back through the fast `_phpify`).
    if isinstance(value, Mapping):
        items = [(_php_key(k), _phpify(v, depth + 1)) for k, v in value.items()]
        if all(isinstance(k, int) for k, _v in items):
            return [v for _k, v in items]
        return {str(k): v for k, v in items}
    if isinstance(value, list | tuple):
        return [_phpify(v, depth + 1) for v in value]
    if value is None or isinstance(value, str | int | float):
        return value
    return None


#: Exact types `_phpify` passes through unchanged (bool is an int for it too).
_SCALARS: frozenset[type] = frozenset({str, int, float, bool, type(None)})
#: A key can only be an integer for PHP when it starts with one of these.
_INT_KEY_START = frozenset("-0123456789")


def _php_key(key: Any) -> int | str:
    if isinstance(key, bool):
        return int(key)
    if isinstance(key, int):
        return key
    text = str(key)
    return int(text) if _INT_KEY_RE.fullmatch(text) else text


def _isset(container: Any, key: str) -> bool:
    return isinstance(container, dict) and container.get(key) is not None


def _get(container: Any, key: str) -> Any:
    return container.get(key) if isinstance(container, dict) else None


def _empty(value: Any) -> bool:
    """PHP empty(): null, false, 0, 0.0, "", "0" and empty arrays."""
    if value is None or value is False:
        return True
    if isinstance(value, str):
        return value in ("", "0")
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, list | dict):
        return not value
    return False


def _eq(value: Any, literal: str) -> bool:
    """PHP 8 `$value == 'LITERAL'` for a non-numeric, non-empty literal.

    Only an equal string or `true` (the literal is truthy) compares equal.
    """
    return value is True or (isinstance(value, str) and value == literal)


def _in(value: Any, literals: Iterable[str]) -> bool:
    """PHP in_array() with loose comparison against non-numeric literals."""
    return any(_eq(value, lit) for lit in literals)


def _php_str(value: Any) -> str:
    """String conversion as trim()/preg_replace() apply it to their argument."""
    if isinstance(value, str):
        return value
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _php_float_str(value)
    # An array: PHP 8 throws a TypeError, PHP 7 returned null; both leave nothing usable.
    return ""


def _php_float_str(value: float) -> str:
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INF" if value > 0 else "-INF"
    text = f"{value:.14G}"
    if "E" in text:
        mantissa, exponent = text.split("E")
        if "." not in mantissa:
            mantissa += ".0"
        sign = exponent[0]
        text = f"{mantissa}E{sign}{int(exponent[1:])}"
    return text


def _trim(value: Any) -> str:
    if type(value) is str:
        return value.strip(_PHP_TRIM)
    return _php_str(value).strip(_PHP_TRIM)


def _no_newlines(text: str) -> str:
    # Every line break the pattern knows is unprintable, so printable text has none.
    return text if text.isprintable() else _NEWLINE_RE.sub(" ", text)


def _intval(value: Any) -> int:
    """PHP (int) / intval()."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return _wrap64(value)
    if isinstance(value, float):
        return _wrap64(int(value)) if math.isfinite(value) else 0
    if isinstance(value, str):
        match = _NUMERIC_PREFIX_RE.match(value)
        if not match:
            return 0
        number = match.group(1)
        if re.fullmatch(r"[+-]?\d+", number):
            return max(_INT64_MIN, min(_INT64_MAX, int(number)))
        as_float = float(number)
        if math.isinf(as_float):
            return _INT64_MAX if as_float > 0 else _INT64_MIN
        return max(_INT64_MIN, min(_INT64_MAX, int(as_float)))
    if isinstance(value, list | dict):
        return 1 if value else 0
    return 0


def _wrap64(number: int) -> int:
    return (number - _INT64_MIN) % 2**64 + _INT64_MIN


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and _URL_RE.match(value) is not None


def _is_color(value: Any) -> bool:
    return isinstance(value, str) and _COLOR_RE.fullmatch(value) is not None


def _html_escape(text: str) -> str:
    """htmlspecialcharsbx() with its default ENT_COMPAT: single quotes stay."""
    return (
        text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


def _foreach(value: Any) -> list[Any]:
    """The values PHP's foreach visits; a scalar yields none (PHP only warns)."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return []


# --- lenient decoding of JSON strings (CUtil::JsObjectToPhp) ---------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _strict_json(text: str) -> tuple[bool, Any]:
    """json_decode($text, true): (ok, value). NaN/Infinity and deep nesting fail as in PHP."""
    try:
        return True, json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None


def _decode_js(text: str) -> tuple[bool, Any, Any]:
    """Decode an ATTACH string the way Bitrix does: JSON first, then a JS-object-literal parser.

    The fallback accepts unquoted keys, single-quoted strings, bare words and trailing commas.
    Returns (strict JSON ok, the strict value, the server's reading already `_phpify`-ed); the
    reading is None for anything it cannot read (the server then answers ATTACH_ERROR).
    """
    ok, value = _strict_json(text)
    if ok and value is not None:
        return ok, value, _phpify_json(value, text)
    return ok, value, _phpify(_JsLiteralParser(text).parse())


# An object that is empty or whose first key may be an integer (digits, a minus, an escape).
_MAYBE_INT_KEYED_RE = re.compile(r'\{\s*(?:\}|"[-0-9\\])')


def _phpify_json(value: Any, text: str) -> Any:
    """`_phpify(value)` for `value = json.loads(text)`, without the walk when it changes nothing.

    Decoded JSON holds only dicts with string keys, lists and plain scalars, so `_phpify` can
    only turn an empty or all-integer-keyed object into a list, or cut nesting past the cap;
    when the text shows neither, the decoded value already is the result.
    """
    if _MAYBE_INT_KEYED_RE.search(text) or _nesting_exceeds(text, _MAX_DEPTH):
        return _phpify(value)
    return value


class _JsLiteralParser:
    _STOP = frozenset(",:]}")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> Any:
        self._skip()
        if self.pos >= len(self.text) or self.text[self.pos] not in "{[":
            return None
        try:
            value = self._value(0)
        except (ValueError, IndexError, RecursionError):
            return None
        self._skip()
        return value if self.pos == len(self.text) else None

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _value(self, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError("too deep")
        self._skip()
        char = self.text[self.pos]
        if char == "{":
            return self._object(depth)
        if char == "[":
            return self._array(depth)
        if char in "\"'":
            return self._string()
        return self._bare()

    def _object(self, depth: int) -> dict[str, Any]:
        self.pos += 1
        result: dict[str, Any] = {}
        while True:
            self._skip()
            if self.text[self.pos] == "}":
                self.pos += 1
                return result
            key = self._string() if self.text[self.pos] in "\"'" else self._bare_word()
            self._skip()
            if self.text[self.pos] != ":":
                raise ValueError("colon expected")
            self.pos += 1
            result[str(key)] = self._value(depth + 1)
            self._separator("}")

    def _array(self, depth: int) -> list[Any]:
        self.pos += 1
        result: list[Any] = []
        while True:
            self._skip()
            if self.text[self.pos] == "]":
                self.pos += 1
                return result
            result.append(self._value(depth + 1))
            self._separator("]")

    def _separator(self, closer: str) -> None:
        self._skip()
        char = self.text[self.pos]
        if char == ",":
            self.pos += 1
        elif char != closer:
            raise ValueError("separator expected")

    def _string(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        out: list[str] = []
        while True:
            char = self.text[self.pos]
            if char == quote:
                self.pos += 1
                return "".join(out)
            if char == "\\":
                self.pos += 1
                escaped = self.text[self.pos]
                if escaped == "u":
                    out.append(chr(int(self.text[self.pos + 1 : self.pos + 5], 16)))
                    self.pos += 4
                else:
                    out.append(
                        {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(
                            escaped, escaped
                        )
                    )
            else:
                out.append(char)
            self.pos += 1

    def _bare_word(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in self._STOP:
            self.pos += 1
        word = self.text[start : self.pos].strip()
        if not word:
            raise ValueError("empty word")
        return word

    def _bare(self) -> Any:
        word = self._bare_word()
        if word == "true":
            return True
        if word == "false":
            return False
        if word == "null":
            return None
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        try:
            return float(word)
        except ValueError:
            return word


# --- ATTACH normalisation (CIMMessageParamAttach::GetAttachByJson) ----------------------------


def _random_color() -> str:
    return f"#{random.randrange(0x1000000):06x}"


def parse_attach(
    value: Any, now: int | None = None, *, random_color: Callable[[], str] | None = None
) -> dict[str, Any] | None:
    """Normalise ATTACH like the server; None when nothing usable is left (ATTACH_ERROR).

    `value` is an object (full form), a list of blocks (short form) or a JSON string of either.
    The result is `{"ID": now, "BLOCKS": [...], "DESCRIPTION": "...", "COLOR"?: "..."}`: the
    caller's ID is ignored, blocks and fields failing their rules are dropped, defaults filled.
    `random_color` replaces an invalid COLOR (the server picks a random one).
    """
    data = _phpify(value)
    if isinstance(data, str):
        _ok, _strict, data = _decode_js(data)
    return _normalise_attach(data, now, random_color)


def _normalise_attach(
    data: Any,
    now: int | None,
    random_color: Callable[[], str] | None,
    grid: Callable[[Any], Any] | None = None,
) -> dict[str, Any] | None:
    # `parse_attach` on data already `_phpify`-ed and decoded. `grid` stands in for
    # `_server_grid` (see `_measure_attach`).
    if not isinstance(data, dict | list):
        return None

    color: Any = "CHAT"  # the server's marker for "no colour of its own"
    if isinstance(data, dict) and _isset(data, "BLOCKS"):
        blocks = data["BLOCKS"]
        if _isset(data, "COLOR"):
            color = data["COLOR"]
    else:
        blocks = data

    result: dict[str, Any] = {
        "ID": int(time.time()) if now is None else now,
        "BLOCKS": [],
        "DESCRIPTION": "",
    }
    # Spec §5.5: no COLOR key when none is sent. (The newest source's constructor even then
    # picks a random colour: 18 more characters, which only matters within 18 of the limit.)
    if _eq(color, "TRANSPARENT"):
        result["COLOR"] = "transparent"
    elif not _eq(color, "CHAT"):
        result["COLOR"] = color if _is_color(color) else (random_color or _random_color)()

    for block in _foreach(blocks):
        _add_block(result, block, grid or _server_grid)
    return result if result["BLOCKS"] else None


def _add_block(result: dict[str, Any], data: Any, grid: Callable[[Any], Any]) -> None:
    # Dispatch by the first known key present, in the server's order; other keys are ignored.
    blocks: list[dict[str, Any]] = result["BLOCKS"]
    if _isset(data, "USER"):
        for item in _one_or_many(data["USER"]):
            _append(blocks, "USER", _server_user(item), wrap=True)
    elif _isset(data, "LINK"):
        for item in _one_or_many(data["LINK"]):
            _append(blocks, "LINK", _server_link(item), wrap=True)
    elif _isset(data, "RICH_LINK"):
        for item in _one_or_many(data["RICH_LINK"]):
            _append(blocks, "RICH_LINK", _server_rich_link(item), wrap=True)
    elif _isset(data, "MESSAGE"):
        message = data["MESSAGE"]
        as_description = False
        if isinstance(message, dict) and _isset(message, "TEXT"):
            as_description = message.get("AS_DESCRIPTION") == "Y"
            message = message["TEXT"]
        text = _server_message_text(message)
        if text is not None:
            if as_description:
                result["DESCRIPTION"] = text
            blocks.append({"MESSAGE": text})
    elif _isset(data, "GRID"):
        _append(blocks, "GRID", grid(data["GRID"]))
    elif _isset(data, "IMAGE"):
        _append(blocks, "IMAGE", _server_items(data["IMAGE"], _server_image))
    elif _isset(data, "FILE"):
        _append(blocks, "FILE", _server_items(data["FILE"], _server_file))
    elif _isset(data, "DELIMITER"):
        blocks.append({"DELIMITER": _server_delimiter(data["DELIMITER"])})


def _append(blocks: list[dict[str, Any]], kind: str, body: Any, *, wrap: bool = False) -> None:
    if body:
        blocks.append({kind: [body] if wrap else body})


def _one_or_many(value: Any) -> list[Any]:
    # USER, LINK and RICH_LINK: a list of objects becomes one block per object.
    return value if isinstance(value, list) else [value]


def _server_message_text(message: Any) -> str | None:
    if isinstance(message, list | dict):
        return None
    text = _trim(message)
    return text.replace("#BR#", "[BR]") if text != "" else None


def _network_id(value: Any) -> str:
    text = _php_str(value)
    return _html_escape(text[:1]) + str(_intval(text[1:]))


def _entity_link(params: dict[str, Any], out: dict[str, Any]) -> bool:
    """LINK / RICH_LINK: an entity id with NAME, or a valid LINK; fills the id field."""
    has_name = _isset(params, "NAME")
    if _isset(params, "NETWORK_ID") and has_name:
        out["NETWORK_ID"] = _network_id(params["NETWORK_ID"])
    elif _isset(params, "USER_ID") and _intval(params["USER_ID"]) > 0 and has_name:
        out["USER_ID"] = _intval(params["USER_ID"])
    elif _isset(params, "CHAT_ID") and _intval(params["CHAT_ID"]) > 0 and has_name:
        out["CHAT_ID"] = _intval(params["CHAT_ID"])
    elif not _is_url(_get(params, "LINK")):
        return False
    return True


def _server_link(params: Any) -> dict[str, Any] | None:
    if not isinstance(params, dict):
        return None
    out: dict[str, Any] = {}
    if not _entity_link(params, out):
        return None
    if _isset(params, "NAME"):
        out["NAME"] = _no_newlines(_trim(params["NAME"]))
    if _isset(params, "LINK"):
        out["LINK"] = params["LINK"]
    if _isset(params, "DESC"):
        out["DESC"] = params["DESC"]
    if _isset(params, "HTML"):
        out["HTML"] = params["HTML"]
    elif _is_url(params.get("PREVIEW")):
        out["PREVIEW"] = params["PREVIEW"]
        _copy_positive(params, out, "WIDTH", "HEIGHT")
    return out


def _server_rich_link(params: Any) -> dict[str, Any] | None:
    if not isinstance(params, dict):
        return None
    out: dict[str, Any] = {}
    if not _entity_link(params, out):
        return None
    if _isset(params, "NAME"):
        out["NAME"] = _no_newlines(_trim(params["NAME"]))
    if _isset(params, "LINK"):
        out["LINK"] = params["LINK"]
    for key in ("DESC", "HTML"):
        if _isset(params, key):
            out[key] = _no_newlines(_trim(params[key]))
    if _is_url(params.get("PREVIEW")):
        out["PREVIEW"] = params["PREVIEW"]
    elif _is_url(params.get("EXTRA_IMAGE")):
        out["EXTRA_IMAGE"] = params["EXTRA_IMAGE"]
    return out


def _server_user(params: Any) -> dict[str, Any] | None:
    if not _isset(params, "NAME") or _trim(params["NAME"]) == "":
        return None
    out: dict[str, Any] = {"NAME": _no_newlines(_php_str(params["NAME"])), "AVATAR_TYPE": "USER"}
    if _isset(params, "NETWORK_ID"):
        out["NETWORK_ID"] = _network_id(params["NETWORK_ID"])
    elif _isset(params, "USER_ID") and _intval(params["USER_ID"]) > 0:
        out["USER_ID"] = _intval(params["USER_ID"])
    elif _isset(params, "CHAT_ID") and _intval(params["CHAT_ID"]) > 0:
        out["CHAT_ID"] = _intval(params["CHAT_ID"])
        out["AVATAR_TYPE"] = "CHAT"
    elif _isset(params, "BOT_ID") and _intval(params["BOT_ID"]) > 0:
        out["BOT_ID"] = _intval(params["BOT_ID"])
        out["AVATAR_TYPE"] = "BOT"
    elif _is_url(params.get("LINK")):
        out["LINK"] = params["LINK"]
    if _is_url(params.get("AVATAR")):
        out["AVATAR"] = params["AVATAR"]
    if _isset(params, "AVATAR_TYPE") and _in(params["AVATAR_TYPE"], ("CHAT", "USER", "BOT")):
        out["AVATAR_TYPE"] = params["AVATAR_TYPE"]
    return out


def _server_grid(value: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    append = items.append
    for grid in _foreach(value):
        if not isinstance(grid, dict):
            continue
        display, name, val = grid.get("DISPLAY"), grid.get("NAME"), grid.get("VALUE")
        if type(display) is str:
            # `_in`/`_eq` of a plain string: a lookup (COLUMN shows as ROW, CARD as LINE).
            shown = _GRID_DISPLAYS.get(display, "BLOCK")
            line = display == "LINE"
        else:
            shown, line = _server_grid_display(display)
        if not line and (
            (name is None and val is None) or (_trim(name) == "" and _trim(val) == "")
        ):
            continue
        name = name.strip(_PHP_TRIM) if type(name) is str else _trim(name)
        val = val.strip(_PHP_TRIM) if type(val) is str else _trim(val)
        out: dict[str, Any] = {
            "DISPLAY": shown,
            "NAME": name if name.isprintable() else _no_newlines(name),
            "VALUE": val.replace("#BR#", "[BR]") if "#BR#" in val else val,
        }
        if not _GRID_EXTRAS.isdisjoint(grid):
            if _is_color(grid.get("COLOR")):
                out["COLOR"] = grid["COLOR"]
            _copy_positive(grid, out, "WIDTH", "HEIGHT", "USER_ID", "CHAT_ID")
            if _is_url(grid.get("LINK")):
                out["LINK"] = grid["LINK"]
        append(out)
    return items


def _server_grid_display(display: Any) -> tuple[Any, bool]:
    """(DISPLAY as the server stores it, whether it counts as LINE) for any value."""
    shown = display
    if display is not None and _in(display, ("BLOCK", "LINE", "CARD", "ROW", "COLUMN", "TABLE")):
        if _eq(shown, "COLUMN"):
            shown = "ROW"
        if _eq(shown, "CARD"):
            shown = "LINE"
    else:
        shown = "BLOCK"
    return shown, _eq(display, "LINE")


_GRID_DISPLAYS = {
    "BLOCK": "BLOCK",
    "LINE": "LINE",
    "CARD": "LINE",
    "ROW": "ROW",
    "COLUMN": "ROW",
    "TABLE": "TABLE",
}
# The optional grid fields; an item with none of them needs no look at any.
_GRID_EXTRAS = frozenset({"COLOR", "WIDTH", "HEIGHT", "USER_ID", "CHAT_ID", "LINK"})


def _server_items(
    value: Any, convert: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> list[dict[str, Any]]:
    # IMAGE and FILE: one object is wrapped into a list; a scalar yields nothing.
    candidates = [value] if isinstance(value, dict) else _foreach(value)
    items = []
    for item in candidates:
        if isinstance(item, dict) and _is_url(item.get("LINK")):
            converted = convert(item)
            if converted is not None:
                items.append(converted)
    return items


def _server_image(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if _isset(item, "NAME") and _trim(item["NAME"]) != "":
        out["NAME"] = _trim(item["NAME"])  # no newline replacement for images in the source
    out["LINK"] = item["LINK"]
    _copy_positive(item, out, "WIDTH", "HEIGHT")
    if _is_url(item.get("PREVIEW")):
        out["PREVIEW"] = item["PREVIEW"]
    return out


def _server_file(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"LINK": item["LINK"]}
    if _isset(item, "NAME") and _trim(item["NAME"]) != "":
        out["NAME"] = _no_newlines(_trim(item["NAME"]))
    _copy_positive(item, out, "SIZE")
    return out


def _server_delimiter(params: Any) -> dict[str, Any]:
    size = _intval(params["SIZE"]) if _isset(params, "SIZE") else 0
    out: dict[str, Any] = {"SIZE": size if size > 0 else 200}
    if _is_color(_get(params, "COLOR")):
        out["COLOR"] = params["COLOR"]
    return out


def _copy_positive(source: dict[str, Any], out: dict[str, Any], *keys: str) -> None:
    for key in keys:
        if _isset(source, key) and _intval(source[key]) > 0:
            out[key] = _intval(source[key])


# --- KEYBOARD normalisation (Im\Bot\Keyboard::getKeyboardByJson, newest release) -------------

_COLOR_FIELDS = ("BG_COLOR", "TEXT_COLOR", "OFF_BG_COLOR", "OFF_TEXT_COLOR")
_ACTIONS = ("PUT", "SEND", "COPY", "CALL", "DIALOG", "LIVECHAT", "HELP")


def parse_keyboard(value: Any, bot_id: Any = None) -> dict[str, Any] | None:
    """Normalise KEYBOARD like the server; None when no button is left (KEYBOARD_ERROR).

    `value` is `{"BUTTONS": [...]}` or a bare list of buttons. A string is NOT decoded by this
    method (spec §5.6): it becomes the BUTTONS value and yields no button. `bot_id` is the
    request's top-level BOT_ID, which the method copies over any BOT_ID inside the keyboard;
    only with it > 0 can COMMAND buttons survive. Returns `{"BUTTONS": [...]}`.
    """
    data = _phpify(value)
    if _empty(data):
        return None
    keyboard = (
        dict(data) if isinstance(data, dict) and _isset(data, "BUTTONS") else {"BUTTONS": data}
    )
    owner = _intval(bot_id)
    colors = keyboard.get("COLORS")
    defaults = {
        k: colors[k] for k in _COLOR_FIELDS if isinstance(colors, dict) and _is_color(colors.get(k))
    }
    vote = _isset(keyboard, "VOTE") and _eq(keyboard["VOTE"], "Y")

    buttons: list[dict[str, Any]] = []
    for button in _foreach(keyboard["BUTTONS"]):
        if _isset(button, "TYPE") and _eq(button["TYPE"], "NEWLINE"):
            buttons.append({"TYPE": "NEWLINE"})
        elif _isset(button, "FUNCTION"):
            continue  # JS-callback buttons are dropped unless enabled internally
        else:
            normalised = _server_button(button, owner, defaults, vote)
            if normalised is not None:
                buttons.append(normalised)
    # A line break is an entry too, so a keyboard of line breaks only is not empty: the source
    # accepts it (spec §5.6 says "no button survives"; the app's policy refuses it anyway).
    return {"BUTTONS": buttons} if buttons else None


def _server_button(
    params: Any, owner: int, defaults: dict[str, Any], vote: bool
) -> dict[str, Any] | None:
    if not isinstance(params, dict):
        return None
    text = params.get("TEXT")
    if _empty(text) or not isinstance(text, str) or _trim(text) == "":
        return None
    out: dict[str, Any] = {"BOT_ID": owner, "TYPE": "BUTTON"}
    # Exactly one action, by priority LINK > (FUNCTION) > APP_ID > ACTION > COMMAND.
    link, app_id, action = params.get("LINK"), params.get("APP_ID"), params.get("ACTION")
    command = params.get("COMMAND")
    if isinstance(link, str) and not _empty(link) and _is_url(link):
        out["LINK"] = _html_escape(link)
    elif not _empty(app_id):
        out["APP_ID"] = _intval(app_id)
        app_params = params.get("APP_PARAMS")
        if isinstance(app_params, str) and _trim(app_params) != "":
            out["APP_PARAMS"] = app_params
    elif (
        isinstance(action, str)
        and action in _ACTIONS
        and not isinstance(params.get("ACTION_VALUE"), list | dict)
        and _trim(params.get("ACTION_VALUE")) != ""
    ):
        out["ACTION"] = action
        out["ACTION_VALUE"] = params["ACTION_VALUE"]
    elif owner > 0 and not _empty(command) and isinstance(command, str) and _trim(command) != "":
        out["COMMAND"] = command[1:] if command.startswith("/") else command
        command_params = params.get("COMMAND_PARAMS")
        out["COMMAND_PARAMS"] = (
            command_params
            if not _empty(command_params)
            and isinstance(command_params, str)
            and _trim(command_params) != ""
            else ""
        )
    else:
        return None
    out["TEXT"] = _trim(text)
    out["VOTE"] = "Y" if vote else "N"
    out["BLOCK"] = "Y" if params.get("BLOCK") == "Y" else "N"
    out["WAIT"] = "N"
    context = params.get("CONTEXT")
    out["CONTEXT"] = context if _in(context, ("MOBILE", "DESKTOP")) else "ALL"
    out["DISABLED"] = "Y" if params.get("DISABLED") == "Y" else "N"
    display = params.get("DISPLAY")
    out["DISPLAY"] = display if _in(display, ("BLOCK", "LINE")) else "BLOCK"
    _copy_positive(params, out, "WIDTH")
    for key in _COLOR_FIELDS:
        if _is_color(params.get(key)):
            out[key] = params[key]
        elif key in defaults:
            out[key] = defaults[key]
    return out


# --- size --------------------------------------------------------------------------------------


def attach_size(normalised: Any, rule: SizeRule) -> int:
    """Length of the server's JSON for a normalised ATTACH (or KEYBOARD), per spec §5.5.

    "chars" (current server): characters of json_encode with JSON_UNESCAPED_UNICODE, where `/`
    is still escaped. "bytes" (older server): bytes of Bitrix's default encoding, which escapes
    every non-ASCII character as \\uXXXX and <, >, &, ', " as \\u003C-style sequences.
    """
    return _php_json_length(normalised, unicode=rule == "chars", hex_specials=rule == "bytes")


def _normalised_size(normalised: dict[str, Any], rule: SizeRule) -> int:
    """`attach_size` of what `parse_attach`/`parse_keyboard` returned.

    Their results nest at most a few levels above `_phpify`-ed data, itself capped at
    `_MAX_DEPTH`, so json_encode's own depth cap (twice that) never applies: no need to look.
    """
    return _php_json_length(
        normalised, unicode=rule == "chars", hex_specials=rule == "bytes", depth_known=True
    )


def _not_json(value: Any) -> Any:
    raise TypeError(type(value).__name__)  # hands the whole value to `_php_json_walk`


# The C encoder, with the separators and escapes json_encode starts from; anything the PHP
# rules spell differently (NaN, unknown types) makes it raise instead.
_JSON_ASCII = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=_not_json
).encode
_JSON_UNICODE = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_not_json
).encode
# For `_nesting_exceeds`: keep quotes and brackets of UTF-8 JSON, brackets as parentheses.
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b'"[]{}')
_AS_PARENS = bytes.maketrans(b"[]{}", b"()()")


def _php_json(value: Any, *, unicode: bool, hex_specials: bool) -> str:
    """json_encode of `value`: PHP's escapes, an empty array as `[]`, NaN as 0, depth-capped.

    The C encoder does the work; only what it cannot express exactly (an empty dict, a type
    JSON lacks, a non-finite float, nesting past the cap, a cycle) goes through the walk.
    Dict keys are written as JSON writes them (`true` for a True key where str() gives
    `True`): the same length, and the decoded request data never has non-string keys.
    """
    try:
        text = _JSON_UNICODE(value) if unicode else _JSON_ASCII(value)
    except (TypeError, ValueError, RecursionError):
        return _php_json_walk(value, unicode=unicode, hex_specials=hex_specials)
    if "{}" in text or _nesting_exceeds(text, _MAX_DEPTH * 2):
        # "{}" may be text inside a string too; the walk is exact either way.
        return _php_json_walk(value, unicode=unicode, hex_specials=hex_specials)
    return _php_escapes(text, unicode=unicode, hex_specials=hex_specials)


def _php_json_length(
    value: Any, *, unicode: bool, hex_specials: bool, depth_known: bool = False
) -> int:
    """`len(_php_json(value, ...))`, counting PHP's extra escape characters in place.

    An empty dict (`{}` for `[]`) and a non-string key (`true` for `True`, `null` for
    `None`) are spelt differently by the C encoder but have the same length, so unlike
    `_php_json` this needs no walk for them. `depth_known`: the caller vouches that `value`
    nests no more than `_MAX_DEPTH * 2` deep.
    """
    try:
        text = _JSON_UNICODE(value) if unicode else _JSON_ASCII(value)
    except (TypeError, ValueError, RecursionError):
        return len(_php_json_walk(value, unicode=unicode, hex_specials=hex_specials))
    if not (depth_known or type(value) is str) and _nesting_exceeds(text, _MAX_DEPTH * 2):
        return len(_php_json_walk(value, unicode=unicode, hex_specials=hex_specials))
    return len(text) + _escape_growth(text, unicode=unicode, hex_specials=hex_specials)


def _escape_growth(text: str, *, unicode: bool, hex_specials: bool) -> int:
    """How much longer `_php_escapes` makes the C encoder's `text`, without rewriting it."""
    growth = text.count("/")  # \/
    if hex_specials:
        raw = text.encode("utf-8", "surrogatepass")
        growth += 5 * (len(raw) - len(raw.translate(None, b"<>&'")))  # \u003C-style
    if "\\" in text:
        escapes = text.replace("\\\\", "")  # a backslash left starts an escape
        if hex_specials:
            growth += 4 * escapes.count('\\"')  # \u0022 for \"
        if not unicode:
            growth -= 5 * escapes.count("\\u007f")  # DEL stays raw
    if unicode and not text.isascii():
        growth += 5 * (text.count("\u2028") + text.count("\u2029"))
    return growth


def _php_escapes(text: str, *, unicode: bool, hex_specials: bool) -> str:
    """Turn the C encoder's output (`ensure_ascii` = not `unicode`) into json_encode's.

    json_encode escapes `/`; Bitrix's older encoding also writes `<>&'"` as \\u003C-style
    sequences. The encoder escapes DEL as \\u007f where PHP leaves it, and with
    `ensure_ascii=False` leaves U+2028/U+2029 raw where PHP escapes them. Both agree on
    everything else: short escapes, lowercase \\u00XX for other controls and non-ASCII,
    surrogate pairs above U+FFFF.
    """
    has_escapes = "\\" in text
    fix_quote = has_escapes and hex_specials and '\\"' in text
    fix_del = has_escapes and not unicode and "\\u007f" in text
    if fix_quote or fix_del:
        # Only a backslash that starts an escape counts: hide every escaped backslash first
        # (NUL never appears raw in the encoder's output).
        text = text.replace("\\\\", "\0")
        if fix_quote:
            text = text.replace('\\"', "\\u0022")
        if fix_del:
            text = text.replace("\\u007f", "\x7f")
        text = text.replace("\0", "\\\\")
    text = text.replace("/", "\\/")
    if hex_specials:
        text = (
            text.replace("<", "\\u003C")
            .replace(">", "\\u003E")
            .replace("&", "\\u0026")
            .replace("'", "\\u0027")
        )
    if unicode and not text.isascii():
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text


def _nesting_exceeds(text: str, limit: int) -> bool:
    """Whether the valid JSON `text` nests containers more than `limit` deep."""
    # Only brackets outside strings count. Drop escaped backslashes and quotes, then keep
    # just quotes and brackets (as parentheses): `"..."` pairs hold the strings' brackets.
    if "\\" in text:
        text = text.replace("\\\\", "").replace('\\"', "")
    marks = text.encode("utf-8", "surrogatepass").translate(_AS_PARENS, _NOT_STRUCTURE)
    if marks.count(b"(") <= limit:
        return False
    # Peel one level per pass: empty pairs of parentheses, then of quotes. A bracket never
    # pairs across a quote, so strings only add passes (or stop them when their own
    # brackets don't balance): when this empties within `limit` passes, so would the
    # nesting outside strings.
    peeled = marks
    for _pass in range(limit):
        shorter = peeled.replace(b"()", b"").replace(b'""', b"")
        if not shorter:
            return False
        if len(shorter) == len(peeled):
            break
        peeled = shorter
    # Exactly: leave out everything between quotes and measure the rest.
    outside = b"".join(marks.split(b'"')[::2])
    steps = (1 if mark == 40 else -1 for mark in outside)  # 40: "("
    return max(itertools.accumulate(steps), default=0) > limit


def _php_json_walk(value: Any, *, unicode: bool, hex_specials: bool) -> str:
    parts: list[str] = []
    _php_json_into(value, parts, unicode=unicode, hex_specials=hex_specials, depth=0)
    return "".join(parts)


def _php_json_into(
    value: Any, parts: list[str], *, unicode: bool, hex_specials: bool, depth: int
) -> None:
    if depth > _MAX_DEPTH * 2 or value is None:
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
        parts.append(_php_json_string(value, unicode=unicode, hex_specials=hex_specials))
    elif isinstance(value, dict) and value:
        parts.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                parts.append(",")
            parts.append(_php_json_string(str(key), unicode=unicode, hex_specials=hex_specials))
            parts.append(":")
            _php_json_into(item, parts, unicode=unicode, hex_specials=hex_specials, depth=depth + 1)
        parts.append("}")
    elif isinstance(value, dict | list | tuple):
        parts.append("[")  # an empty PHP array is a list
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _php_json_into(item, parts, unicode=unicode, hex_specials=hex_specials, depth=depth + 1)
        parts.append("]")
    else:
        parts.append("null")


def _php_json_string(text: str, *, unicode: bool, hex_specials: bool) -> str:
    encoded = _JSON_UNICODE(text) if unicode else _JSON_ASCII(text)
    return _php_escapes(encoded, unicode=unicode, hex_specials=hex_specials)


# --- the method ----------------------------------------------------------------------------------


def _server_code(value: Any, rule: SizeRule) -> str | None:
    """CODE as the server reads it, or None when the length check fails (check #2)."""
    if value is None or isinstance(value, list | dict):
        return None
    code = _php_str(value)
    # The current source counts characters (mb_strlen), the older one bytes (strlen).
    length = len(code) if rule == "chars" else len(code.encode("utf-8", "surrogatepass"))
    return code if length == 32 else None


def _server_message(value: Any) -> str:
    return "" if isinstance(value, list | dict) else _trim(value)


def server_accept(
    params: Mapping[str, Any],
    *,
    line_joined: Callable[[str], bool],
    limit_reached: Callable[[str, int], bool],
    now: int | None = None,
    size_rule: SizeRule = "chars",
    random_color: Callable[[], str] | None = None,
) -> ServerMessage | ServerRefusal:
    """Run the method's checks in the server's order (spec §5.3) and normalise the payload.

    Checks #1 (session auth), #3 (imbot module) and #12 (message creation) belong to the
    caller. `line_joined(code)` answers #4/#5 (FDC code, or no network bot for CODE);
    `limit_reached(code, user_id)` answers #7 (§5.7). `size_rule` picks the current ("chars")
    or older ("bytes") server; the older one also counts CODE in bytes.
    """
    upper = {str(key).upper(): _phpify(val) for key, val in params.items()}

    code = _server_code(upper.get("CODE"), size_rule)
    if code is None:
        return server_refusal("CODE")
    if not line_joined(code):
        return server_refusal("NOT_FOUND")
    user_id = _intval(upper.get("USER_ID"))
    if user_id == 0:
        return server_refusal("USER_ID_EMPTY")
    if limit_reached(code, user_id):
        return server_refusal("USER_MESSAGE_LIMIT")
    message = _server_message(upper.get("MESSAGE"))
    if message == "":
        return server_refusal("MESSAGE_EMPTY")

    attach = None
    if not _empty(upper.get("ATTACH")):
        attach = parse_attach(upper["ATTACH"], now, random_color=random_color)
        if attach is None:
            return server_refusal("ATTACH_ERROR")
        if _normalised_size(attach, size_rule) >= ATTACH_SIZE_LIMIT:
            return server_refusal("ATTACH_OVERSIZE")

    keyboard = None
    if not _empty(upper.get("KEYBOARD")):
        keyboard = parse_keyboard(upper["KEYBOARD"], upper.get("BOT_ID"))
        if keyboard is None:
            return server_refusal("KEYBOARD_ERROR")

    # `== 'N'` in PHP: the string N, or a JSON true (true == 'N' is true there).
    url_preview = not _eq(upper.get("URL_PREVIEW"), "N")
    return ServerMessage(
        code=code,
        user_id=user_id,
        message=message,
        attach=attach,
        keyboard=keyboard,
        url_preview=url_preview,
    )


# ---------------------------------------------------------------------------------------------
# Layer 2: the app's policy
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One reason to refuse a payload.

    `code` is the server's error code (or KEYBOARD_OVERSIZE for the app's own keyboard cap),
    `field` a path such as `ATTACH.BLOCKS[2].LINK.LINK` or `KEYBOARD.BUTTONS[0].LINK`, and
    `policy` is true when no server version would refuse for this reason: only the app does.
    """

    code: str
    field: str
    message: StrOrPromise = dataclasses.field(compare=False, repr=False)
    policy: bool = False


class PayloadError(ValueError):
    """Raised by `from_bitrix()` for input the policy refuses; carries every problem."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.code}" for p in problems))
        self.problems = problems


# The server's check order (spec §5.3); the app's keyboard cap comes after everything else.
_RANK = {
    "CODE": 0,
    "NOT_FOUND": 1,
    "USER_ID_EMPTY": 2,
    "USER_MESSAGE_LIMIT": 3,
    "MESSAGE_EMPTY": 4,
    "ATTACH_OVERSIZE": 5,
    "ATTACH_ERROR": 6,
    "KEYBOARD_ERROR": 7,
    "KEYBOARD_OVERSIZE": 8,
}
_CODE_RE = re.compile(r"[\x21-\x7e]{32}")  # 32 printable ASCII characters: same in chars and bytes
_SPACE_RE = re.compile(r"[\s\x00-\x1f\x7f]")
_MAX_ID = 2**31 - 1
_MAX_FILE_SIZE = 2**53 - 1
_COLOR_TOKENS = ("primary", "secondary", "alert", "base")
# A fixed ten-digit ID for measuring: the server puts the current unix time there.
_MEASURE_NOW = 1_700_000_000

_Validator: TypeAlias = Callable[[Any], "StrOrPromise | None"]


class _Checker:
    """Collects problems of one error code; every problem starts as policy-only."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.problems: list[Problem] = []
        self._plain_grids: dict[int, tuple[Any, _PlainGrid | None]] = {}

    def plain_grid(self, body: Any) -> _PlainGrid | None:
        """`_plain_grid(body)`, read once for the policy and the measuring alike."""
        seen = self._plain_grids.get(id(body))
        if seen is None or seen[0] is not body:
            seen = self._plain_grids[id(body)] = (body, _plain_grid(body))
        return seen[1]

    def add(self, path: str, message: StrOrPromise) -> None:
        self.problems.append(Problem(self.code, path, message, policy=True))

    def server_refuses(self, fallback_path: str, fallback: StrOrPromise) -> list[Problem]:
        """The server refuses the whole field too: the problems are no longer policy-only."""
        if not self.problems:
            self.add(fallback_path, fallback)
        return [dataclasses.replace(p, policy=False) for p in self.problems]


def _blank(value: Any) -> bool:
    # Blank for Python or for PHP's trim(), which also strips NUL but no Unicode spaces.
    return not isinstance(value, str) or not value.strip() or not value.strip(_PHP_TRIM)


def _text(value: Any) -> StrOrPromise | None:
    return _("Enter some text here; it can't be blank.") if _blank(value) else None


def _button_text(value: Any) -> StrOrPromise | None:
    # The keyboard parser tests TEXT with PHP's empty(), which is true for "0".
    if value == "0":
        return _("A button text of just “0” is dropped by Bitrix.")
    return _text(value)


def _url(value: Any) -> StrOrPromise | None:
    if isinstance(value, str) and _URL_RE.match(value) and not _SPACE_RE.search(value):
        return None
    return _("A link must start with https://, http:// or / and contain no spaces.")


def _color(value: Any) -> StrOrPromise | None:
    return None if _is_color(value) else _("A colour must look like #RGB or #RRGGBB.")


def _attach_color(value: Any) -> StrOrPromise | None:
    return None if value == "TRANSPARENT" else _color(value)


def _positive(limit: int) -> _Validator:
    def check(value: Any) -> StrOrPromise | None:
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= limit:
            return None
        return _("This must be a positive whole number.")

    return check


def _choice(*choices: str) -> _Validator:
    def check(value: Any) -> StrOrPromise | None:
        if isinstance(value, str) and value in choices:
            return None
        return format_lazy(_("Choose one of: {choices}."), choices=", ".join(choices))

    return check


_POSITIVE = _positive(_MAX_ID)
_YES_NO = _choice("Y", "N")
_UNKNOWN_FIELD = _("Bitrix ignores this field here, so it is not allowed.")
_NOT_LINK_BUTTON = _("Only link buttons are allowed: TEXT and LINK, plus optional styling.")


@dataclass(frozen=True)
class _ItemRule:
    fields: Mapping[str, _Validator]
    required: tuple[str, ...]
    cross_check: Callable[[dict[str, Any], str, _Checker], None] | None = None


def _check_item(
    item: Any, path: str, rule: _ItemRule, checker: _Checker, unknown: StrOrPromise = _UNKNOWN_FIELD
) -> None:
    if not isinstance(item, dict):
        checker.add(path, _("Expected an object here."))
        return
    for key, value in item.items():
        validator = rule.fields.get(key)
        if validator is None:
            checker.add(f"{path}.{key}", unknown)
            continue
        message = validator(value)
        if message is not None:
            checker.add(f"{path}.{key}", message)
    for key in rule.required:
        if key not in item:
            checker.add(f"{path}.{key}", _("This field is required."))
    if rule.cross_check is not None:
        rule.cross_check(item, path, checker)


def _refused(message: StrOrPromise) -> _Validator:
    """A field the policy never accepts, with the reason."""

    def check(value: Any) -> StrOrPromise:
        return message

    return check


_NETWORK_ID_RE = re.compile(r"[A-Za-z][1-9][0-9]{0,17}")


def _network_id_value(value: Any) -> StrOrPromise | None:
    # The server keeps the first character (HTML-escaped) and intval() of the rest (see
    # `_network_id`): only "a letter, then a number" survives unchanged.
    if isinstance(value, str) and _NETWORK_ID_RE.fullmatch(value):
        return None
    return _(
        "A NETWORK_ID is one letter followed by a number without leading zeros; "
        "Bitrix rewrites anything else."
    )


def _plain_html(value: Any) -> StrOrPromise | None:
    # Older releases run HTML through CBXSanitizer, which rewrites or strips markup, and the
    # im web client shows the field as text (chat-rendering.md §4.2): tags would not survive.
    message = _text(value)
    if message is None and ("<" in value or ">" in value):
        return _(
            "Leave out HTML tags: Bitrix rewrites markup in HTML, and the chat shows this "
            "field as text."
        )
    return message


# LINK and RICH_LINK: a LINK, or one of these ids with a NAME, in the server's priority order.
_LINK_ENTITIES = ("NETWORK_ID", "USER_ID", "CHAT_ID")
# USER: the server keeps exactly one of these, the first present in this order.
_USER_TARGETS = ("NETWORK_ID", "USER_ID", "CHAT_ID", "BOT_ID", "LINK")


def _link_target(item: dict[str, Any], path: str, checker: _Checker) -> None:
    """LINK / RICH_LINK: a LINK or one entity id with a NAME (spec §5.5)."""
    entities = [key for key in _LINK_ENTITIES if key in item]
    if not entities and "LINK" not in item:
        checker.add(
            f"{path}.LINK", _("Add a LINK, or a USER_ID, CHAT_ID or NETWORK_ID with a NAME.")
        )
    if entities and "NAME" not in item:
        # Without NAME the server skips the id: the block falls back to LINK or is dropped.
        checker.add(
            f"{path}.NAME",
            _("USER_ID, CHAT_ID and NETWORK_ID need a NAME; Bitrix ignores them without one."),
        )
    for key in entities[1:]:
        checker.add(
            f"{path}.{key}",
            _("Bitrix keeps only the first of NETWORK_ID, USER_ID and CHAT_ID; remove the others."),
        )


def _html_alone(item: dict[str, Any], path: str, checker: _Checker) -> None:
    if "HTML" not in item:
        return
    if "DESC" in item:
        checker.add(f"{path}.DESC", _("Use DESC or HTML, not both: the chat shows only HTML."))
    # LINK reads PREVIEW only without HTML in every release examined (`_server_link`), and
    # older releases' RICH_LINK reads PREVIEW and EXTRA_IMAGE only without HTML too.
    for key in ("PREVIEW", "EXTRA_IMAGE"):
        if key in item:
            checker.add(
                f"{path}.{key}",
                _("Bitrix drops the preview image when HTML is set; use DESC instead of HTML."),
            )


def _size_needs_preview(item: dict[str, Any], path: str, checker: _Checker) -> None:
    # The server keeps WIDTH/HEIGHT of a LINK block only next to a valid PREVIEW.
    if "PREVIEW" not in item:
        for key in ("WIDTH", "HEIGHT"):
            if key in item:
                checker.add(f"{path}.{key}", _("WIDTH and HEIGHT need a PREVIEW image."))


def _check_link(item: dict[str, Any], path: str, checker: _Checker) -> None:
    _link_target(item, path, checker)
    _html_alone(item, path, checker)
    _size_needs_preview(item, path, checker)


def _check_rich_link(item: dict[str, Any], path: str, checker: _Checker) -> None:
    _link_target(item, path, checker)
    _html_alone(item, path, checker)
    if "PREVIEW" in item and "EXTRA_IMAGE" in item:
        checker.add(f"{path}.EXTRA_IMAGE", _("Use PREVIEW or EXTRA_IMAGE, not both."))


def _user_target(item: dict[str, Any], path: str, checker: _Checker) -> None:
    targets = [key for key in _USER_TARGETS if key in item]
    for key in targets[1:]:
        checker.add(
            f"{path}.{key}",
            _(
                "Bitrix keeps only the first of NETWORK_ID, USER_ID, CHAT_ID, BOT_ID and LINK; "
                "remove the others."
            ),
        )


_LINK_RULE = _ItemRule(
    fields={
        "LINK": _url,
        "USER_ID": _POSITIVE,
        "CHAT_ID": _POSITIVE,
        "NETWORK_ID": _network_id_value,
        "NAME": _text,
        "DESC": _text,
        "HTML": _plain_html,
        "PREVIEW": _url,
        "WIDTH": _POSITIVE,
        "HEIGHT": _POSITIVE,
    },
    required=(),
    cross_check=_check_link,
)
# Spec §5.5 gives RICH_LINK the fields of LINK, but no server version keeps a RICH_LINK's
# WIDTH/HEIGHT (`AddRichLink` copies only PREVIEW or EXTRA_IMAGE; see `_server_rich_link`).
_RICH_LINK_SIZE = _refused(
    _("Bitrix keeps WIDTH and HEIGHT only for a LINK preview; a RICH_LINK loses them.")
)
_RICH_LINK_RULE = _ItemRule(
    fields={
        **_LINK_RULE.fields,
        "EXTRA_IMAGE": _url,
        "WIDTH": _RICH_LINK_SIZE,
        "HEIGHT": _RICH_LINK_SIZE,
    },
    required=(),
    cross_check=_check_rich_link,
)
_USER_RULE = _ItemRule(
    fields={
        "NAME": _text,
        "AVATAR": _url,
        "AVATAR_TYPE": _choice("USER", "CHAT", "BOT"),
        "LINK": _url,
        "USER_ID": _POSITIVE,
        "CHAT_ID": _POSITIVE,
        "BOT_ID": _POSITIVE,
        "NETWORK_ID": _network_id_value,
    },
    required=("NAME",),
    cross_check=_user_target,
)
# NAME and VALUE are both required: the oldest server versions drop an item missing either.
_GRID_ITEM_RULE = _ItemRule(
    fields={
        "DISPLAY": _choice("BLOCK", "LINE", "ROW", "TABLE"),
        "NAME": _text,
        "VALUE": _text,
        "WIDTH": _POSITIVE,
        "HEIGHT": _POSITIVE,
        "COLOR": _color,
        "COLOR_TOKEN": _choice(*_COLOR_TOKENS),
        "LINK": _url,
        "USER_ID": _POSITIVE,
        "CHAT_ID": _POSITIVE,
    },
    required=("NAME", "VALUE"),
)
_IMAGE_RULE = _ItemRule(
    fields={"LINK": _url, "NAME": _text, "PREVIEW": _url, "WIDTH": _POSITIVE, "HEIGHT": _POSITIVE},
    required=("LINK",),
)
_FILE_RULE = _ItemRule(
    fields={"LINK": _url, "NAME": _text, "SIZE": _positive(_MAX_FILE_SIZE)},
    required=("LINK",),
)
_DELIMITER_RULE = _ItemRule(fields={"SIZE": _POSITIVE, "COLOR": _color}, required=())
_BUTTON_RULE = _ItemRule(
    fields={
        "TEXT": _button_text,
        "LINK": _url,
        "BG_COLOR": _color,
        "TEXT_COLOR": _color,
        "OFF_BG_COLOR": _color,
        "OFF_TEXT_COLOR": _color,
        "BG_COLOR_TOKEN": _choice(*_COLOR_TOKENS),
        "DISPLAY": _choice("LINE", "BLOCK"),
        "WIDTH": _POSITIVE,
        "BLOCK": _YES_NO,
        "DISABLED": _YES_NO,
        "CONTEXT": _choice("MOBILE", "DESKTOP", "ALL"),
    },
    required=("TEXT", "LINK"),
)


def _one_or_many_rule(rule: _ItemRule) -> Callable[[Any, str, _Checker], None]:
    def check(body: Any, path: str, checker: _Checker) -> None:
        if isinstance(body, dict):
            _check_item(body, path, rule, checker)
        elif isinstance(body, list) and body:
            for index, item in enumerate(body):
                _check_item(item, f"{path}[{index}]", rule, checker)
        else:
            checker.add(path, _("Expected an object or a non-empty list of objects."))

    return check


def _check_message_block(body: Any, path: str, checker: _Checker) -> None:
    if isinstance(body, dict):
        # Spec §5.5 lists `{"TEXT": …, "AS_DESCRIPTION": "Y"}`, but older releases of
        # `CIMMessageParamAttach::AddMessage` trim() the value itself, so the object form is
        # dropped there (PHP 7) or fails the call (PHP 8). Only the plain string is safe.
        checker.add(
            path,
            _(
                "Older Bitrix versions drop a MESSAGE block given as an object (TEXT, "
                "AS_DESCRIPTION); write the text itself as the block's value."
            ),
        )
        return
    message = _text(body)
    if message is not None:
        checker.add(path, message)


def _check_grid_block(body: Any, path: str, checker: _Checker) -> None:
    if not isinstance(body, list) or not body:
        checker.add(path, _("A grid needs a non-empty list of items."))
        return
    plain = checker.plain_grid(body)
    if (plain is not None and plain.policy_ok) or all(map(_grid_item_ok, body)):
        return
    for index, item in enumerate(body):
        _check_item(item, f"{path}[{index}]", _GRID_ITEM_RULE, checker)


def _grid_item_ok(item: Any) -> bool:
    """A quick yes: `_check_item` finds no problem in this grid item (False: it may)."""
    if type(item) is not dict:
        return False
    get = item.get
    name, value = get("NAME"), get("VALUE")
    if type(name) is not str or type(value) is not str:
        return False
    if not (name.strip() and value.strip() and name.strip(_PHP_TRIM) and value.strip(_PHP_TRIM)):
        return False  # blank (see `_blank`)
    size = len(item)
    if size == 2:
        return True
    if size == 3:
        display = get("DISPLAY")
        if type(display) is str and display in _POLICY_GRID_DISPLAYS:
            return True
    fields = _GRID_ITEM_RULE.fields
    for key, field in item.items():
        if key == "NAME" or key == "VALUE":
            continue
        if key == "DISPLAY" and type(field) is str and field in _POLICY_GRID_DISPLAYS:
            continue
        validator = fields.get(key)
        if validator is None or validator(field) is not None:
            return False
    return True


class _PlainGrid(NamedTuple):
    """A GRID of plain items: dicts with string NAME and VALUE, maybe a string DISPLAY.

    The rows the server keeps (`_server_grid`) are `{"DISPLAY", "NAME", "VALUE"}` made of
    `shown`, `names` and `values`: no newline replaced yet in the names, no `#BR#` in the
    values. `policy_ok`: `_check_item` finds no problem in any item.
    """

    shown: list[str]
    names: list[str]
    values: list[str]
    policy_ok: bool


def _plain_grid(body: Any) -> _PlainGrid | None:
    """`body` read as a `_PlainGrid`, in one pass; None unless every item is plain."""
    if type(body) is not list:
        return None
    shown: list[str] = []
    names: list[str] = []
    values: list[str] = []
    policy_ok = True
    trim, add_shown, add_name, add_value = _PHP_TRIM, shown.append, names.append, values.append
    for item in body:
        # Plain: exactly DISPLAY, NAME and VALUE, or exactly NAME and VALUE.
        if type(item) is not dict:
            return None
        try:
            if len(item) == 3:
                display, name, value = item["DISPLAY"], item["NAME"], item["VALUE"]
            elif len(item) == 2:
                display, name, value = _NO_DISPLAY, item["NAME"], item["VALUE"]
            else:
                return None
        except KeyError:
            return None
        if type(name) is not str or type(value) is not str:
            return None
        if type(display) is str:
            line = display == "LINE"
            if display not in _POLICY_GRID_DISPLAYS:
                policy_ok = False
            display = _GRID_DISPLAYS.get(display, "BLOCK")
        elif display is _NO_DISPLAY or display is None:
            line = False
            if display is None:
                policy_ok = False  # DISPLAY: null is no choice
            display = "BLOCK"
        else:
            return None
        trimmed_name, trimmed_value = name.strip(trim), value.strip(trim)
        if not (trimmed_name and trimmed_value):
            policy_ok = False  # blank
            if not (line or trimmed_name or trimmed_value):
                continue  # `_server_grid` drops a blank item
        add_shown(display)
        add_name(trimmed_name)
        add_value(trimmed_value)
    # Not blank (`_blank`) also needs something that Python's strip() keeps. What it keeps
    # of the trimmed text, it keeps of the whole (if not, this just says no).
    policy_ok = policy_ok and all(map(str.strip, names)) and all(map(str.strip, values))
    return _PlainGrid(shown, names, values, policy_ok)


_NO_DISPLAY = object()


def _plain_rows_length(plain: _PlainGrid, *, unicode: bool, hex_specials: bool) -> int:
    """`_php_json_length(_server_grid(body), ...)` of a plain grid, without building rows."""
    rows = len(plain.shown)
    if not rows:
        return 2  # []
    text = "".join(plain.names)
    if not text.isprintable():
        text = "".join(map(_no_newlines, plain.names))
    more = "".join(plain.values)
    if "#BR#" in more:
        more = "".join(value.replace("#BR#", "[BR]") for value in plain.values)
    # Escaping works character by character: the strings' escaped lengths add up to that of
    # their concatenation (less its quotes). Each row adds `{"DISPLAY":"…","NAME":"…",
    # "VALUE":"…"}` around them (35 characters), the list its brackets and commas.
    joined = text + more
    strings = _php_json_length(joined, unicode=unicode, hex_specials=hex_specials) - 2
    return 1 + 36 * rows + len("".join(plain.shown)) + strings


def _check_delimiter_block(body: Any, path: str, checker: _Checker) -> None:
    _check_item(body, path, _DELIMITER_RULE, checker)


_POLICY_GRID_DISPLAYS = frozenset({"BLOCK", "LINE", "ROW", "TABLE"})
_BLOCK_CHECKS: dict[str, Callable[[Any, str, _Checker], None]] = {
    "MESSAGE": _check_message_block,
    "LINK": _one_or_many_rule(_LINK_RULE),
    "RICH_LINK": _one_or_many_rule(_RICH_LINK_RULE),
    "USER": _one_or_many_rule(_USER_RULE),
    "GRID": _check_grid_block,
    "IMAGE": _one_or_many_rule(_IMAGE_RULE),
    "FILE": _one_or_many_rule(_FILE_RULE),
    "DELIMITER": _check_delimiter_block,
}
_ATTACH_FIELDS: dict[str, _Validator] = {
    "COLOR": _attach_color,
    "COLOR_TOKEN": _choice(*_COLOR_TOKENS),
    # Spec §5.5: the server uses the current unix time as the ID, whatever is sent.
    "ID": _refused(_("Bitrix replaces the ID with its own (the time of sending).")),
    # Spec §5.5: the parser reads a top-level DESCRIPTION but does not apply it.
    "DESCRIPTION": _refused(
        _("Bitrix reads a top-level DESCRIPTION but does not use it, so the text would be lost.")
    ),
}


def _check_block(block: Any, path: str, checker: _Checker) -> None:
    if not isinstance(block, dict) or len(block) != 1:
        checker.add(path, _("A block must be an object with exactly one key naming its type."))
        return
    ((kind, body),) = block.items()
    check = _BLOCK_CHECKS.get(kind)
    if check is None:
        checker.add(f"{path}.{kind}", _("Unknown block type: Bitrix would drop this block."))
        return
    check(body, f"{path}.{kind}", checker)


def _check_attach_structure(value: Any, checker: _Checker) -> None:
    if isinstance(value, dict):
        if "BLOCKS" not in value:
            checker.add("ATTACH.BLOCKS", _("An attachment object needs a BLOCKS list."))
            return
        for key, item in value.items():
            if key == "BLOCKS":
                continue
            validator = _ATTACH_FIELDS.get(key)
            message = _UNKNOWN_FIELD if validator is None else validator(item)
            if message is not None:
                checker.add(f"ATTACH.{key}", message)
        blocks, base = value["BLOCKS"], "ATTACH.BLOCKS"
    elif isinstance(value, list):
        blocks, base = value, "ATTACH"
    else:
        checker.add("ATTACH", _("The attachment must be an object with BLOCKS or a list."))
        return
    if not isinstance(blocks, list) or not blocks:
        checker.add(base, _("Add at least one block."))
        return
    for index, block in enumerate(blocks):
        _check_block(block, f"{base}[{index}]", checker)


def validate_attach(value: Any) -> list[Problem]:
    """Every problem with an ATTACH value; none for a falsy value (no attachment)."""
    data = _phpify(value)
    if _empty(data):
        return []
    checker = _Checker("ATTACH_ERROR")
    # The structure an ATTACH value stands for; a string must be strict JSON of a container.
    # It is decoded once, for the policy and for the server's reading alike.
    structure = reading = data
    if isinstance(data, str):
        ok, decoded, reading = _decode_js(data)
        if not (ok and isinstance(decoded, dict | list)):
            checker.add("ATTACH", _("The attachment must be JSON of an object or a list."))
            # Not JSON: read it like the server does, to report the rest.
            structure = reading if not ok else None
        else:
            structure = reading
    if structure is not None:
        _check_attach_structure(structure, checker)
    size = _measure_attach(reading, checker)
    if size is None:
        return checker.server_refuses("ATTACH", _("No block of this attachment is valid."))
    problems = checker.problems
    if size >= POLICY_SIZE_LIMIT:
        message = format_lazy(
            _("The attachment is too large: {size} bytes, the limit is {limit}."),
            size=size,
            limit=POLICY_SIZE_LIMIT - 1,
        )
        oversize = Problem("ATTACH_OVERSIZE", "ATTACH", message, size < ATTACH_SIZE_LIMIT)
        problems = [oversize, *problems]
    return problems


def _measure_attach(reading: Any, checker: _Checker) -> int | None:
    """`attach_size` of the server's normalised ATTACH by the older rule; None if none is left.

    The same as measuring `_normalise_attach(reading, …)`, but a grid of plain items
    (`_PlainGrid`, as the policy check already read it) is measured from its strings instead
    of being built and encoded: it stands in the normalised ATTACH as `[0]`, three
    characters, and its real length is added instead.
    """
    extra = 0

    def grid(body: Any) -> Any:
        nonlocal extra
        plain = checker.plain_grid(body)
        if plain is None:
            return _server_grid(body)
        if not plain.shown:
            return []  # no row: the block is dropped
        extra += _plain_rows_length(plain, unicode=False, hex_specials=True) - 3
        return _MEASURED_ROWS

    normalised = _normalise_attach(reading, _MEASURE_NOW, lambda: "#000000", grid)
    if normalised is None:
        return None
    return _normalised_size(normalised, "bytes") + extra


_MEASURED_ROWS = (0,)


def _check_buttons(buttons: Any, base: str, checker: _Checker) -> None:
    if not isinstance(buttons, list) or not buttons:
        checker.add(base, _("Add at least one link button."))
        return
    before = len(checker.problems)
    links = 0
    for index, button in enumerate(buttons):
        path = f"{base}[{index}]"
        if isinstance(button, dict) and "TYPE" in button:
            if button != {"TYPE": "NEWLINE"}:
                checker.add(path, _('A line break is exactly {"TYPE": "NEWLINE"}.'))
            continue
        _check_item(button, path, _BUTTON_RULE, checker, unknown=_NOT_LINK_BUTTON)
        links += 1
    if links == 0 and len(checker.problems) == before:
        checker.add(base, _("Add at least one link button; line breaks alone are not a keyboard."))


_KEYBOARD_ONLY = _("A keyboard object holds only BUTTONS here.")
_KEYBOARD_FIELDS: dict[str, StrOrPromise] = {
    # The server applies COLORS as defaults to each button; the builder keeps colours per
    # button, so the policy wants them there.
    "COLORS": _("Give each button its own colours; keyboard-wide COLORS are not kept here."),
    # Spec §5.6: the method copies the request's top-level BOT_ID over this one.
    "BOT_ID": _("Bitrix replaces a BOT_ID inside the keyboard with the request's own BOT_ID."),
}


def validate_keyboard(value: Any, bot_id: Any = None) -> list[Problem]:
    """Every problem with a KEYBOARD value; none for a falsy value (no keyboard).

    `bot_id` is the request's BOT_ID, which the server passes to the keyboard parser.
    """
    data = _phpify(value)
    if _empty(data):
        return []
    checker = _Checker("KEYBOARD_ERROR")
    if isinstance(data, str):
        checker.add(
            "KEYBOARD",
            _("Send the keyboard as an object or a list: this method does not decode a string."),
        )
    elif isinstance(data, dict):
        if "BUTTONS" not in data:
            checker.add("KEYBOARD.BUTTONS", _("A keyboard object needs a BUTTONS list."))
        else:
            for key in data:
                if key != "BUTTONS":
                    checker.add(f"KEYBOARD.{key}", _KEYBOARD_FIELDS.get(key, _KEYBOARD_ONLY))
            _check_buttons(data["BUTTONS"], "KEYBOARD.BUTTONS", checker)
    elif isinstance(data, list):
        _check_buttons(data, "KEYBOARD", checker)
    else:
        checker.add("KEYBOARD", _("The keyboard must be an object with BUTTONS or a list."))
    normalised = parse_keyboard(data, bot_id)
    if normalised is None:
        return checker.server_refuses("KEYBOARD", _("No button of this keyboard is valid."))
    problems = checker.problems
    size = _normalised_size(normalised, "bytes")
    if size >= POLICY_SIZE_LIMIT:
        message = format_lazy(
            _("The keyboard is too large: {size} bytes, the limit is {limit}."),
            size=size,
            limit=POLICY_SIZE_LIMIT - 1,
        )
        problems = [*problems, Problem("KEYBOARD_OVERSIZE", "KEYBOARD", message, policy=True)]
    return problems


def _code_problems(value: Any) -> list[Problem]:
    data = _phpify(value)
    server_ok = _server_code(data, "chars") is not None and _server_code(data, "bytes") is not None
    if isinstance(value, str) and _CODE_RE.fullmatch(value):
        return []
    message = _("The open line code must be exactly 32 characters.")
    return [Problem("CODE", "CODE", message, policy=server_ok)]


def _user_id_problems(value: Any) -> list[Problem]:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_ID:
        return []
    server_ok = _intval(_phpify(value)) != 0
    message = _("Choose a recipient: the user ID must be a positive whole number.")
    return [Problem("USER_ID_EMPTY", "USER_ID", message, policy=server_ok)]


def _message_problems(value: Any) -> list[Problem]:
    if not _blank(value):
        return []
    server_ok = _server_message(_phpify(value)) != ""
    message = _("Write a message: the text can't be empty.")
    return [Problem("MESSAGE_EMPTY", "MESSAGE", message, policy=server_ok)]


def _ordered(problems: list[Problem]) -> list[Problem]:
    # Whatever the server itself refuses first leads; then the app's own reasons, in check order.
    return sorted(problems, key=lambda p: (p.policy, _RANK.get(p.code, len(_RANK))))


def validate_params(params: Mapping[str, Any]) -> list[Problem]:
    """Every problem with the method's parameters, the one the server would report first first.

    `params` is the JSON body as the app sends it: CODE, USER_ID, MESSAGE, ATTACH (object,
    list or JSON string), KEYBOARD (object or list), URL_PREVIEW, optionally BOT_ID. Keys are
    case-insensitive. Codes are the server's, plus KEYBOARD_OVERSIZE for the app's cap. An
    empty list means every server version accepts the payload (a joined line and a recipient
    outside the weekly limit assumed).
    """
    upper = {str(key).upper(): value for key, value in params.items()}
    problems = [
        *_code_problems(upper.get("CODE")),
        *_user_id_problems(upper.get("USER_ID")),
        *_message_problems(upper.get("MESSAGE")),
        *validate_attach(upper.get("ATTACH")),
        *validate_keyboard(upper.get("KEYBOARD"), upper.get("BOT_ID")),
    ]
    return _ordered(problems)


# ---------------------------------------------------------------------------------------------
# Layer 3: builder objects for the composer
# ---------------------------------------------------------------------------------------------

ColorToken: TypeAlias = Literal["primary", "secondary", "alert", "base"]
GridDisplay: TypeAlias = Literal["BLOCK", "LINE", "ROW", "TABLE"]
AvatarType: TypeAlias = Literal["USER", "CHAT", "BOT"]
ButtonDisplay: TypeAlias = Literal["LINE", "BLOCK"]
ButtonContext: TypeAlias = Literal["MOBILE", "DESKTOP", "ALL"]


def _compact(*pairs: tuple[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in pairs if value is not None}


def _yes_no(flag: bool | None) -> str | None:
    return None if flag is None else ("Y" if flag else "N")


def _flag(value: Any) -> bool | None:
    return None if value is None else value == "Y"


def _raise_if(problems: list[Problem]) -> None:
    if problems:
        raise PayloadError(_ordered(problems))


def _single_problem(code: str, path: str, message: StrOrPromise) -> PayloadError:
    return PayloadError([Problem(code, path, message, policy=False)])


@dataclass(frozen=True)
class MessageText:
    """The MESSAGE parameter: text with BB codes (spec §5.4)."""

    text: str

    def to_bitrix(self) -> str:
        return self.text

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        _raise_if(_message_problems(data))
        return cls(text=data)


@dataclass(frozen=True)
class MessageBlock:
    """`{"MESSAGE": "text"}`: a paragraph with BB codes."""

    text: str

    def to_bitrix(self) -> dict[str, Any]:
        return {"MESSAGE": self.text}

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        return _block_from_bitrix(cls, data)


@dataclass(frozen=True)
class LinkBlock:
    """`{"LINK": {...}}`: a link with optional description and preview image.

    The target is `link` (a URL), or one of `user_id`, `chat_id`, `network_id` (a
    Bitrix24.Network contact: a letter and a number) together with `name`. `html` is shown
    instead of `desc` (as text: no tags).
    """

    link: str | None = None
    name: str | None = None
    desc: str | None = None
    preview: str | None = None
    width: int | None = None
    height: int | None = None
    html: str | None = None
    user_id: int | None = None
    chat_id: int | None = None
    network_id: str | None = None

    def to_bitrix(self) -> dict[str, Any]:
        return {
            "LINK": _compact(
                ("LINK", self.link),
                ("USER_ID", self.user_id),
                ("CHAT_ID", self.chat_id),
                ("NETWORK_ID", self.network_id),
                ("NAME", self.name),
                ("DESC", self.desc),
                ("HTML", self.html),
                ("PREVIEW", self.preview),
                ("WIDTH", self.width),
                ("HEIGHT", self.height),
            )
        }

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        return _block_from_bitrix(cls, data)


@dataclass(frozen=True)
class RichLinkBlock:
    """`{"RICH_LINK": {...}}`: a link shown as an expanded preview.

    Targets as for `LinkBlock`. No WIDTH/HEIGHT: the server keeps those only for LINK.
    """

    link: str | None = None
    name: str | None = None
    desc: str | None = None
    preview: str | None = None
    extra_image: str | None = None
    html: str | None = None
    user_id: int | None = None
    chat_id: int | None = None
    network_id: str | None = None

    def to_bitrix(self) -> dict[str, Any]:
        return {
            "RICH_LINK": _compact(
                ("LINK", self.link),
                ("USER_ID", self.user_id),
                ("CHAT_ID", self.chat_id),
                ("NETWORK_ID", self.network_id),
                ("NAME", self.name),
                ("DESC", self.desc),
                ("HTML", self.html),
                ("PREVIEW", self.preview),
                ("EXTRA_IMAGE", self.extra_image),
            )
        }

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        return _block_from_bitrix(cls, data)


@dataclass(frozen=True)
class UserBlock:
    """`{"USER": {...}}`: a person, chat or bot line with an avatar.

    At most one target: `link`, `user_id`, `chat_id` (avatar type CHAT by default), `bot_id`
    (BOT by default) or `network_id`.
    """

    name: str
    avatar: str | None = None
    avatar_type: AvatarType | None = None
    link: str | None = None
    user_id: int | None = None
    chat_id: int | None = None
    bot_id: int | None = None
    network_id: str | None = None

    def to_bitrix(self) -> dict[str, Any]:
        return {
            "USER": _compact(
                ("NAME", self.name),
                ("AVATAR", self.avatar),
                ("AVATAR_TYPE", self.avatar_type),
                ("LINK", self.link),
                ("USER_ID", self.user_id),
                ("CHAT_ID", self.chat_id),
                ("BOT_ID", self.bot_id),
                ("NETWORK_ID", self.network_id),
            )
        }

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        return _block_from_bitrix(cls, data)


@dataclass(frozen=True)
class GridItem:
    """One NAME/VALUE cell of a GRID block."""

    name: str
    value: str
    display: GridDisplay = "BLOCK"
    width: int | None = None
    height: int | None = None
    color: str | None = None
    color_token: ColorToken | None = None
    link: str | None = None
    user_id: int | None = None
    chat_id: int | None = None

    def to_bitrix(self) -> dict[str, Any]:
        return _compact(
            ("DISPLAY", self.display),
            ("NAME", self.name),
            ("VALUE", self.value),
            ("WIDTH", self.width),
            ("HEIGHT", self.height),
            ("COLOR", self.color),
            ("COLOR_TOKEN", self.color_token),
            ("LINK", self.link),
            ("USER_ID", self.user_id),
            ("CHAT_ID", self.chat_id),
        )

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        item = _item_from_bitrix(data, _GRID_ITEM_RULE, "ATTACH_ERROR")
        return cls(
            name=item["NAME"],
            value=item["VALUE"],
            display=item.get("DISPLAY", "BLOCK"),
            width=item.get("WIDTH"),
            height=item.get("HEIGHT"),
            color=item.get("COLOR"),
            color_token=item.get("COLOR_TOKEN"),
            link=item.get("LINK"),
            user_id=item.get("USER_ID"),
            chat_id=item.get("CHAT_ID"),
        )


@dataclass(frozen=True)
class GridBlock:
    """`{"GRID": [...]}`: a table of NAME/VALUE items."""

    items: tuple[GridItem, ...]

    def to_bitrix(self) -> dict[str, Any]:
        return {"GRID": [item.to_bitrix() for item in self.items]}

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        return _block_from_bitrix(cls, data)


@dataclass(frozen=True)
class ImageItem:
    """One picture of an IMAGE block."""

    link: str
    name: str | None = None
    preview: str | None = None
    width: int | None = None
    height: int | None = None

    def to_bitrix(self) -> dict[str, Any]:
        return _compact(
            ("LINK", self.link),
            ("NAME", self.name),
            ("PREVIEW", self.preview),
            ("WIDTH", self.width),
            ("HEIGHT", self.height),
        )

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        item = _item_from_bitrix(data, _IMAGE_RULE, "ATTACH_ERROR")
        return cls(
            link=item["LINK"],
            name=item.get("NAME"),
            preview=item.get("PREVIEW"),
            width=item.get("WIDTH"),
            height=item.get("HEIGHT"),
        )


@dataclass(frozen=True)
class ImageBlock:
    """`{"IMAGE": [...]}`: one or more pictures."""

    items: tuple[ImageItem, ...]

    def to_bitrix(self) -> dict[str, Any]:
        return {"IMAGE": [item.to_bitrix() for item in self.items]}

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        return _block_from_bitrix(cls, data)


@dataclass(frozen=True)
class FileItem:
    """One downloadable file of a FILE block."""

    link: str
    name: str | None = None
    size: int | None = None

    def to_bitrix(self) -> dict[str, Any]:
        return _compact(("LINK", self.link), ("NAME", self.name), ("SIZE", self.size))

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        item = _item_from_bitrix(data, _FILE_RULE, "ATTACH_ERROR")
        return cls(link=item["LINK"], name=item.get("NAME"), size=item.get("SIZE"))


@dataclass(frozen=True)
class FileBlock:
    """`{"FILE": [...]}`: one or more files."""

    items: tuple[FileItem, ...]

    def to_bitrix(self) -> dict[str, Any]:
        return {"FILE": [item.to_bitrix() for item in self.items]}

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        return _block_from_bitrix(cls, data)


@dataclass(frozen=True)
class DelimiterBlock:
    """`{"DELIMITER": {...}}`: a horizontal rule; the server's default width is 200 px."""

    size: int = 200
    color: str | None = None

    def to_bitrix(self) -> dict[str, Any]:
        # SIZE is always sent: an empty object disappears in form encoding.
        return {"DELIMITER": _compact(("SIZE", self.size), ("COLOR", self.color))}

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        return _block_from_bitrix(cls, data)


Block: TypeAlias = (
    MessageBlock
    | LinkBlock
    | RichLinkBlock
    | UserBlock
    | GridBlock
    | ImageBlock
    | FileBlock
    | DelimiterBlock
)
_BlockT = TypeVar("_BlockT", bound=Block)


def _as_list(body: Any) -> list[Any]:
    return body if isinstance(body, list) else [body]


def _build_blocks(block: dict[str, Any]) -> list[Block]:
    """Builder objects for one validated block; a list of links becomes several blocks."""
    ((kind, body),) = block.items()
    if kind == "MESSAGE":
        return [MessageBlock(text=body)]
    if kind == "LINK":
        return [
            LinkBlock(
                link=item.get("LINK"),
                name=item.get("NAME"),
                desc=item.get("DESC"),
                preview=item.get("PREVIEW"),
                width=item.get("WIDTH"),
                height=item.get("HEIGHT"),
                html=item.get("HTML"),
                user_id=item.get("USER_ID"),
                chat_id=item.get("CHAT_ID"),
                network_id=item.get("NETWORK_ID"),
            )
            for item in _as_list(body)
        ]
    if kind == "RICH_LINK":
        return [
            RichLinkBlock(
                link=item.get("LINK"),
                name=item.get("NAME"),
                desc=item.get("DESC"),
                preview=item.get("PREVIEW"),
                extra_image=item.get("EXTRA_IMAGE"),
                html=item.get("HTML"),
                user_id=item.get("USER_ID"),
                chat_id=item.get("CHAT_ID"),
                network_id=item.get("NETWORK_ID"),
            )
            for item in _as_list(body)
        ]
    if kind == "USER":
        return [
            UserBlock(
                name=item["NAME"],
                avatar=item.get("AVATAR"),
                avatar_type=item.get("AVATAR_TYPE"),
                link=item.get("LINK"),
                user_id=item.get("USER_ID"),
                chat_id=item.get("CHAT_ID"),
                bot_id=item.get("BOT_ID"),
                network_id=item.get("NETWORK_ID"),
            )
            for item in _as_list(body)
        ]
    if kind == "GRID":
        return [GridBlock(items=tuple(GridItem.from_bitrix(item) for item in body))]
    if kind == "IMAGE":
        return [ImageBlock(items=tuple(ImageItem.from_bitrix(i) for i in _as_list(body)))]
    if kind == "FILE":
        return [FileBlock(items=tuple(FileItem.from_bitrix(i) for i in _as_list(body)))]
    return [DelimiterBlock(size=body.get("SIZE", 200), color=body.get("COLOR"))]


def _block_from_bitrix(cls: type[_BlockT], data: Any) -> _BlockT:
    block = _phpify(data)
    checker = _Checker("ATTACH_ERROR")
    _check_block(block, "BLOCK", checker)
    _raise_if(checker.problems)
    built = _build_blocks(block)
    if len(built) != 1 or not isinstance(built[0], cls):
        raise _single_problem(
            "ATTACH_ERROR",
            "BLOCK",
            format_lazy(_("Expected exactly one {kind} block."), kind=cls.__name__),
        )
    return built[0]


def _item_from_bitrix(data: Any, rule: _ItemRule, code: str) -> dict[str, Any]:
    item = _phpify(data)
    checker = _Checker(code)
    _check_item(item, "ITEM", rule, checker)
    _raise_if(checker.problems)
    assert isinstance(item, dict)
    return item


@dataclass(frozen=True)
class Attach:
    """The ATTACH parameter (spec §5.5), always sent in the full form."""

    blocks: tuple[Block, ...]
    color: str | None = None
    color_token: ColorToken | None = None

    def to_bitrix(self) -> dict[str, Any]:
        return {
            "BLOCKS": [block.to_bitrix() for block in self.blocks],
            **_compact(("COLOR", self.color), ("COLOR_TOKEN", self.color_token)),
        }

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        """Read the full form, the short form (a list of blocks) or a JSON string of either."""
        value = _phpify(data)
        if _empty(value):
            raise _single_problem("ATTACH_ERROR", "ATTACH", _("The attachment is empty."))
        _raise_if(validate_attach(value))
        if isinstance(value, str):
            value = _phpify(json.loads(value))
        blocks = value["BLOCKS"] if isinstance(value, dict) else value
        built = tuple(b for block in blocks for b in _build_blocks(block))
        if isinstance(value, dict):
            return cls(blocks=built, color=value.get("COLOR"), color_token=value.get("COLOR_TOKEN"))
        return cls(blocks=built)


@dataclass(frozen=True)
class LinkButton:
    """A keyboard button opening a link: the only button kind this method may carry."""

    text: str
    link: str
    bg_color: str | None = None
    text_color: str | None = None
    bg_color_token: ColorToken | None = None
    display: ButtonDisplay | None = None
    width: int | None = None
    disabled: bool | None = None
    block: bool | None = None
    context: ButtonContext | None = None
    # Colours of the button's "off" state (spec §5.6); stored by the server, not drawn by the
    # current web messenger (chat-rendering.md §5).
    off_bg_color: str | None = None
    off_text_color: str | None = None

    def to_bitrix(self) -> dict[str, Any]:
        return _compact(
            ("TEXT", self.text),
            ("LINK", self.link),
            ("BG_COLOR", self.bg_color),
            ("TEXT_COLOR", self.text_color),
            ("OFF_BG_COLOR", self.off_bg_color),
            ("OFF_TEXT_COLOR", self.off_text_color),
            ("BG_COLOR_TOKEN", self.bg_color_token),
            ("DISPLAY", self.display),
            ("WIDTH", self.width),
            ("DISABLED", _yes_no(self.disabled)),
            ("BLOCK", _yes_no(self.block)),
            ("CONTEXT", self.context),
        )

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        item = _item_from_bitrix(data, _BUTTON_RULE, "KEYBOARD_ERROR")
        return cls(
            text=item["TEXT"],
            link=item["LINK"],
            bg_color=item.get("BG_COLOR"),
            text_color=item.get("TEXT_COLOR"),
            bg_color_token=item.get("BG_COLOR_TOKEN"),
            display=item.get("DISPLAY"),
            width=item.get("WIDTH"),
            disabled=_flag(item.get("DISABLED")),
            block=_flag(item.get("BLOCK")),
            context=item.get("CONTEXT"),
            off_bg_color=item.get("OFF_BG_COLOR"),
            off_text_color=item.get("OFF_TEXT_COLOR"),
        )


@dataclass(frozen=True)
class NewLine:
    """`{"TYPE": "NEWLINE"}`: starts a new row of buttons."""

    def to_bitrix(self) -> dict[str, Any]:
        return {"TYPE": "NEWLINE"}

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        if _phpify(data) != {"TYPE": "NEWLINE"}:
            raise _single_problem(
                "KEYBOARD_ERROR", "BUTTON", _('A line break is exactly {"TYPE": "NEWLINE"}.')
            )
        return cls()


def _build_button(button: dict[str, Any]) -> LinkButton | NewLine:
    return NewLine() if "TYPE" in button else LinkButton.from_bitrix(button)


@dataclass(frozen=True)
class Keyboard:
    """The KEYBOARD parameter (spec §5.6), always sent in the full form."""

    buttons: tuple[LinkButton | NewLine, ...]

    def to_bitrix(self) -> dict[str, Any]:
        return {"BUTTONS": [button.to_bitrix() for button in self.buttons]}

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        """Read `{"BUTTONS": [...]}` or a bare list; a string is refused as the server does."""
        value = _phpify(data)
        if _empty(value):
            raise _single_problem("KEYBOARD_ERROR", "KEYBOARD", _("The keyboard is empty."))
        _raise_if(validate_keyboard(value))
        buttons = value["BUTTONS"] if isinstance(value, dict) else value
        return cls(buttons=tuple(_build_button(button) for button in buttons))


@dataclass(frozen=True)
class Payload:
    """What the composer produces: everything but CODE and USER_ID, which vary per recipient."""

    message: MessageText
    attach: Attach | None = None
    keyboard: Keyboard | None = None
    url_preview: bool = True

    def to_bitrix(self) -> dict[str, Any]:
        params: dict[str, Any] = {"MESSAGE": self.message.to_bitrix()}
        if self.attach is not None:
            params["ATTACH"] = self.attach.to_bitrix()
        if self.keyboard is not None:
            params["KEYBOARD"] = self.keyboard.to_bitrix()
        params["URL_PREVIEW"] = "Y" if self.url_preview else "N"
        return params

    def to_params(self, *, code: str, user_id: int) -> dict[str, Any]:
        """The full parameter set of one `imopenlines.network.message.add` call."""
        return {"CODE": code, "USER_ID": user_id, **self.to_bitrix()}

    @classmethod
    def from_bitrix(cls, data: Any) -> Self:
        """Read MESSAGE, ATTACH, KEYBOARD and URL_PREVIEW; other parameters are ignored."""
        if not isinstance(data, Mapping):
            raise _single_problem("MESSAGE_EMPTY", "MESSAGE", _("Expected the method parameters."))
        upper = {str(key).upper(): value for key, value in data.items()}
        attach, keyboard = upper.get("ATTACH"), upper.get("KEYBOARD")
        _raise_if(
            [
                *_message_problems(upper.get("MESSAGE")),
                *validate_attach(attach),
                *validate_keyboard(keyboard, upper.get("BOT_ID")),
            ]
        )
        return cls(
            message=MessageText(text=upper["MESSAGE"]),
            attach=None if _empty(_phpify(attach)) else Attach.from_bitrix(attach),
            keyboard=None if _empty(_phpify(keyboard)) else Keyboard.from_bitrix(keyboard),
            url_preview=not _eq(upper.get("URL_PREVIEW"), "N"),
        )
