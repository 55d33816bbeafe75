"""Draw a Bitrix24 chat message (MESSAGE text, ATTACH, KEYBOARD) as HTML.

The output mirrors what the Bitrix24 web messenger ("im v2") shows, so that the composer preview and
the sandbox inbox look like the real chat. Facts and constants come from
``/work/shared/spec/chat-rendering.md``; the CSS lives in ``static/css/chat.css``.

Pure code: no ORM, no HTTP, no settings. Everything user-supplied is escaped. Links and images
are only ever ``http(s)://`` or a ``/path``; colours and sizes reach a ``style`` attribute only
after they passed a hex regex or an ``int`` conversion, so the markup stays compatible with a CSP
that allows nothing else in ``style``.

How ``render_bbcode`` stays safe: like the Bitrix parser it escapes the whole text first and then
rewrites BB codes with regular expressions. Unlike it, every piece of markup we generate is parked
in a side table and represented in the working string by a control-character token (control
characters are removed from the input, so users cannot forge one). Later regexes therefore never see
or edit our attributes, and a final pass swaps the tokens back, repairing any overlap of user tags
(``[b][i]x[/b][/i]``) so the fragment is always well-formed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import urljoin

from django.utils.dates import MONTHS_ALT, WEEKDAYS
from django.utils.html import escape, strip_tags
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext, pgettext, pgettext_lazy

__all__ = [
    "COLOR_TOKENS",
    "DEFAULT_ATTACH_COLOR",
    "format_file_size",
    "render_attach",
    "render_bbcode",
    "render_keyboard",
    "render_message",
    "shorten_file_name",
]

# Default attach bar colour (Color.base in the im client).
DEFAULT_ATTACH_COLOR = "#17a3ea"
# COLOR_TOKEN -> hex. The client sources only name the tokens; these values are the team's
# proposal from the Bitrix UI palette (chat-rendering.md §4.3).
COLOR_TOKENS: Mapping[str, str] = {
    "base": DEFAULT_ATTACH_COLOR,
    "primary": "#2fc6f6",
    "secondary": "#a8adb4",
    "alert": "#ff5752",
}

_LINK_REL = "noopener noreferrer"
_HEX_RE = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_IMAGE_PATH_RE = re.compile(r"\.(?:jpe?g|png|gif|webp)$", re.IGNORECASE)
# Whitespace, controls, quotes, angle brackets and backslashes never belong in a link we emit
# (a backslash would let "/\evil.com" act as a protocol-relative URL in browsers).
_URL_BAD_CHARS_RE = re.compile(r"[\s\x00-\x1f\x7f<>\"`\\]")
# Input characters that are removed before parsing; \x00 and \x01 are our own token markers.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MAX_INT = 100_000

# ---------------------------------------------------------------------------------------------
# Small validated-value helpers
# ---------------------------------------------------------------------------------------------


def _hex_color(value: object) -> str | None:
    if isinstance(value, str) and _HEX_RE.fullmatch(value.strip()):
        return value.strip().lower()
    return None


def _token_color(value: object) -> str | None:
    if isinstance(value, str):
        return COLOR_TOKENS.get(value.strip().lower())
    return None


def _int(value: object) -> int | None:
    """A positive int from an int or a digit string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 9:
        number = int(value.strip())
    else:
        return None
    if number <= 0:
        return None
    return min(number, _MAX_INT)


def _text(value: object) -> str:
    if value is None or isinstance(value, Mapping | list | tuple):
        return ""
    return str(value)


def _is_yes(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.strip().upper() == "Y")


def _safe_url(value: object, base_url: str | None = None) -> str | None:
    """The URL if Bitrix would accept it (``^(https?://|/)``), resolved against ``base_url``.

    Returns None for anything else (``javascript:``, ``data:``, ``//host``, spaces, quotes ...),
    and the caller then shows the text instead of a link.
    """
    if not isinstance(value, str):
        return None
    url = value.strip()
    if not url or _URL_BAD_CHARS_RE.search(url):
        return None
    lower = url.lower()
    if lower.startswith(("http://", "https://")):
        rest = url.split("://", 1)[1]
        return url if rest.strip("/") else None
    if url.startswith("/") and not url.startswith("//"):
        base = _safe_base(base_url)
        return urljoin(base, url) if base else url
    return None


def _safe_base(base_url: str | None) -> str | None:
    if not base_url:
        return None
    base = base_url.strip()
    if _URL_BAD_CHARS_RE.search(base) or not base.lower().startswith(("http://", "https://")):
        return None
    return base


def _is_image_url(url: str) -> bool:
    lower = url.lower()
    path = lower.split("#", 1)[0].split("?", 1)[0]
    if "/docs/pub/" in lower or "logout=yes" in lower:
        return False
    return bool(_IMAGE_PATH_RE.search(path))


def _attrs(**attributes: object) -> str:
    """Render HTML attributes; ``None``/``False`` values are skipped, names use '-' for '_'."""
    parts = []
    for name, value in attributes.items():
        if value is None or value is False:
            continue
        attr = name.rstrip("_").replace("_", "-")
        parts.append(f' {attr}="{escape(str(value))}"')
    return "".join(parts)


def _style(**properties: str | int | None) -> str | None:
    """A style attribute value from already validated colours (hex) and pixel ints."""
    declarations = []
    for name, value in properties.items():
        if value is None:
            continue
        css_value = f"{value}px" if isinstance(value, int) else value
        declarations.append(f"{name.replace('_', '-')}: {css_value}")
    return "; ".join(declarations) or None


def _link_open(url: str, css_class: str, title: str | None = None) -> str:
    return f"<a{_attrs(class_=css_class, href=url, target='_blank', rel=_LINK_REL, title=title)}>"


# ---------------------------------------------------------------------------------------------
# MESSAGE text: BB codes
# ---------------------------------------------------------------------------------------------

_BR = "\x01"  # one line break in the working string
_TOKEN_RE = re.compile(r"\x00(\d+)\x00")
_SPLIT_RE = re.compile(r"(\x00\d+\x00|\x01)")
_NBSP4 = "&nbsp;" * 4
_QUOTE_SIGN = "&gt;&gt;"
_ANY_TAG_RE = re.compile(r"\[/?[a-z]+(?:=[^\]\x01]*)?\]", re.IGNORECASE)

_CODE_RE = re.compile(r"\[code\](.*?)\[/code\]", re.IGNORECASE | re.DOTALL)
_ACTION_RE = re.compile(r"\[(put|send)(?:=([^\]\x01]+?))?\](.*?)\[/\1\]", re.IGNORECASE | re.DOTALL)
_ME_RE = re.compile(r"/me(?=$|\s|&nbsp;|\x01)")
_LOUD_RE = re.compile(r"/loud(?=$|\s|&nbsp;|\x01)")
# A "------" quote: a line of exactly 54 dashes, the quoted lines, another such line. Its first
# line may be a "Name [date]" header (optionally followed by a " #chat12/345" context mark).
_DASH_QUOTE_RE = re.compile(
    r"(?:^|(?<=\x01))-{54}(?!-)((?:\x01.*?)?)\x01-{54}(?!-)(?=\x01|$)", re.DOTALL
)
_QUOTE_HEADER_RE = re.compile(
    r"([^\[\]]*[^\[\]\s;])\s*\[([^\[\]]*\S[^\[\]]*)\](?: #(?:chat\d+|\d+:\d+)/\d+)?"
)
_IMG_RE = re.compile(r"\[img(?:\s+size=([^\]\x01]*))?\](.*?)\[/img\]", re.IGNORECASE | re.DOTALL)
_ICON_RE = re.compile(r"\[icon=([^\]\x01]*)\]", re.IGNORECASE)
_URL_TAG_RE = re.compile(r"\[url(?:=([^\[\]\x01]+?))?\](.*?)\[/url\]", re.IGNORECASE | re.DOTALL)
_BARE_URL_RE = re.compile(
    r"(?<![\w/=.@+\-])https?://(?:(?!&(?:lt|gt|quot|#x27|nbsp);)[^\s\x00\x01\[\]])+",
    re.IGNORECASE,
)
_FONT_RES = tuple(
    (tag, re.compile(rf"\[{tag}\]((?:(?!\[/?{tag}\]).)*)\[/{tag}\]", re.IGNORECASE | re.DOTALL))
    for tag in ("b", "u", "i", "s")
)
_SIZE_RE = re.compile(
    r"\[size=(\d{1,9})(?:pt|px)?\]((?:(?!\[size=\d|\[/size\]).)*)\[/size\]",
    re.IGNORECASE | re.DOTALL,
)
_COLOR_RE = re.compile(
    r"\[color=(#[0-9a-f]{6}|#[0-9a-f]{3})\]((?:(?!\[color=|\[/color\]).)*)\[/color\]",
    re.IGNORECASE | re.DOTALL,
)
_LIKE_RE = re.compile(r"\[(like|dislike)\]", re.IGNORECASE)
_RATING_RE = re.compile(r"\[rating=([1-5])\]", re.IGNORECASE)
_USER_RE = re.compile(
    r"\[user=(\d{1,12}|all)( replace)?\](.*?)\[/user\]", re.IGNORECASE | re.DOTALL
)
_CHAT_RE = re.compile(r"\[chat=(imol\|)?(\d{1,12})\](.*?)\[/chat\]", re.IGNORECASE | re.DOTALL)
_CONTEXT_RE = re.compile(
    r"\[context=((?:chat\d+|\d+:\d+)/\d+)\](.*?)\[/context\]", re.IGNORECASE | re.DOTALL
)
_CALL_RE = re.compile(r"\[call(?:=([^\]\x01]+))?\](.*?)\[/call\]", re.IGNORECASE | re.DOTALL)
_PHONE_RE = re.compile(r"\+?[0-9][0-9 ()\-.]{0,30}")
_DISK_RE = re.compile(r"\[disk=\d{1,12}\]", re.IGNORECASE)
_TIMESTAMP_RE = re.compile(r"\[timestamp=(\d{1,11}) format=([a-z_]{1,40})\]", re.IGNORECASE)
_DATE_RE = re.compile(
    r"\[date=(\d{4}-\d{2}-\d{2}T[0-2]\d:[0-5]\d:[0-5]\d[+-][0-2]\d:[0-5]\d)\](.+?)\[/date\]",
    re.IGNORECASE | re.DOTALL,
)


def _month(d: datetime) -> str:
    """The month's name as it follows a day number ("5 March"; Russian "5 марта")."""
    return str(MONTHS_ALT[d.month])


def _weekday(d: datetime) -> str:
    return str(WEEKDAYS[d.weekday()])


# Bitrix date-format codes for [timestamp]; Bitrix takes them from the viewer's culture, we use one
# fixed European-style culture with month and day names in the active language (Django's own
# translations).
_DATE_FORMATS: Mapping[str, Callable[[datetime], str]] = {
    "SHORT_TIME_FORMAT": lambda d: f"{d:%H:%M}",
    "LONG_TIME_FORMAT": lambda d: f"{d:%H:%M:%S}",
    "SHORT_DATE_FORMAT": lambda d: f"{d:%d.%m.%Y}",
    "MEDIUM_DATE_FORMAT": lambda d: f"{d.day} {_month(d)[:3]} {d.year}",
    "LONG_DATE_FORMAT": lambda d: f"{d.day} {_month(d)} {d.year}",
    "FULL_DATE_FORMAT": lambda d: f"{_weekday(d)}, {d.day} {_month(d)} {d.year}",
    "DAY_MONTH_FORMAT": lambda d: f"{d.day} {_month(d)}",
    "DAY_SHORT_MONTH_FORMAT": lambda d: f"{d.day} {_month(d)[:3]}",
    "DAY_OF_WEEK_MONTH_FORMAT": lambda d: f"{_weekday(d)}, {d.day} {_month(d)}",
    "FORMAT_DATE": lambda d: f"{d:%d.%m.%Y}",
    "FORMAT_DATETIME": lambda d: f"{d:%d.%m.%Y %H:%M:%S}",
    "SHORT_DATE_TIME_FORMAT": lambda d: f"{d:%d.%m.%Y %H:%M}",
}


@dataclass(frozen=True, slots=True)
class _Piece:
    """Generated markup parked outside the working string.

    ``open``/``close`` pieces share a ``pair`` number so the final pass can re-nest them;
    an ``atom`` is self-contained HTML. ``block`` pieces swallow an adjacent line break, because a
    block element already starts a new line.
    """

    kind: str
    html: str
    pair: int = 0
    tag: str = ""
    block: bool = False


class _BBCode:
    def __init__(self, *, base_url: str | None, now_tz: tzinfo | None) -> None:
        self.base_url = base_url
        self.now_tz = now_tz
        self.pieces: list[_Piece] = []

    # -- token helpers -------------------------------------------------------------------------

    def _token(self, piece: _Piece) -> str:
        self.pieces.append(piece)
        return f"\x00{len(self.pieces) - 1}\x00"

    def atom(self, markup: str, *, block: bool = False) -> str:
        return self._token(_Piece("atom", markup, block=block))

    def wrap(self, tag: str, inner: str, attrs: str = "", *, block: bool = False) -> str:
        pair = len(self.pieces)
        opening = self._token(_Piece("open", f"<{tag}{attrs}>", pair, tag, block))
        closing = self._token(_Piece("close", f"</{tag}>", pair, tag, block))
        return f"{opening}{inner}{closing}"

    @staticmethod
    def plain(fragment: str) -> str:
        """Unescaped plain text of a working-string fragment (tokens dropped, breaks as spaces)."""
        return html.unescape(_TOKEN_RE.sub("", fragment).replace(_BR, " "))

    # -- pipeline ------------------------------------------------------------------------------

    def render(self, text: str) -> str:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        text = _CONTROL_RE.sub("", text)
        text = re.sub(r"#br#", "[br]", text, flags=re.IGNORECASE).strip()
        if not text:
            return ""
        # Same order as the im client parser (chat-rendering.md §3).
        s = str(escape(text))
        s = re.sub(r"\[br\]", _BR, s, flags=re.IGNORECASE).replace("\n", _BR)
        s = s.replace("    ", "\t").replace("\t", _NBSP4)
        s = _CODE_RE.sub(self._code, s)
        s = _ACTION_RE.sub(self._action, s)
        s = self._slash_command(s)
        s = self._arrow_quotes(s)
        s = _DASH_QUOTE_RE.sub(self._dash_quote, s)
        # [img] and [icon] carry URLs, so they go before links are detected in plain text.
        s = _IMG_RE.sub(self._img, s)
        s = _ICON_RE.sub(self._icon, s)
        s = _URL_TAG_RE.sub(self._url_tag, s)
        s = self._bare_urls(s)
        s = self._fonts(s)
        s = _LIKE_RE.sub(self._like, s)
        s = _RATING_RE.sub(self._rating, s)
        s = _USER_RE.sub(self._user, s)
        s = _CHAT_RE.sub(self._chat, s)
        s = _CONTEXT_RE.sub(self._context, s)
        s = _CALL_RE.sub(self._call, s)
        s = _DISK_RE.sub(lambda m: self.atom(str(escape("[File]"))), s)
        s = _TIMESTAMP_RE.sub(self._timestamp, s)
        s = _DATE_RE.sub(self._date, s)
        return self.finish(s)

    def _code(self, m: re.Match[str]) -> str:
        body = m.group(1).strip(_BR).replace(_BR, "<br>")
        return self.atom(f'<div class="b24-chat-code">{body}</div>', block=True)

    def _action(self, m: re.Match[str]) -> str:
        kind, command, label = m.group(1).lower(), m.group(2), m.group(3)
        label = label or command or ""
        command = command or label
        shown = " ".join(_ANY_TAG_RE.sub("", self.plain(label)).split())
        if not shown:
            return ""
        attrs = _attrs(
            class_=f"b24-chat-command b24-chat-command--{kind}", title=self.plain(command).strip()
        )
        return self.atom(f"<span{attrs}>{escape(shown)}</span>")

    def _slash_command(self, s: str) -> str:
        me = _ME_RE.match(s)
        if me:
            return f"[i]{s[me.end() :]}[/i]"
        loud = _LOUD_RE.match(s)
        if loud:
            return f"[size=20]{s[loud.end() :]}[/size]"
        return s

    def _quote(self, inner: str, header: str = "") -> str:
        wrap = self.wrap("div", header + inner, ' class="b24-chat-quote__wrap"', block=True)
        return self.wrap("div", wrap, ' class="b24-chat-quote"', block=True)

    def _arrow_quotes(self, s: str) -> str:
        if _QUOTE_SIGN not in s:
            return s
        lines = s.split(_BR)
        out: list[str] = []
        i = 0
        while i < len(lines):
            if not lines[i].startswith(_QUOTE_SIGN):
                out.append(lines[i])
                i += 1
                continue
            group = []
            while i < len(lines) and lines[i].startswith(_QUOTE_SIGN):
                group.append(lines[i][len(_QUOTE_SIGN) :])
                i += 1
            out.append(self._quote(_BR.join(group)))
        return _BR.join(out)

    def _dash_quote(self, m: re.Match[str]) -> str:
        lines = m.group(1).removeprefix(_BR).split(_BR)
        header = ""
        found = _QUOTE_HEADER_RE.fullmatch(lines[0]) if len(lines) > 1 else None
        if found:
            name, when = found.group(1), found.group(2)
            lines = lines[1:]
            header = self.wrap(
                "div",
                self.wrap("span", name, ' class="b24-chat-quote__name-text"')
                + self.wrap("span", when, ' class="b24-chat-quote__name-time"'),
                ' class="b24-chat-quote__name"',
                block=True,
            )
        return self._quote(_BR.join(lines).strip(_BR), header)

    def _image(self, url: str, css_class: str) -> str:
        img = f"<img{_attrs(class_='b24-chat-image__img', src=url, alt='', loading='lazy')}>"
        return f"{_link_open(url, css_class)}{img}</a>"

    def _img(self, m: re.Match[str]) -> str:
        url = _safe_url(self.plain(m.group(2)).strip(), self.base_url)
        size = (m.group(1) or "").strip().lower()
        if url is None or not _is_image_url(url) or size not in {"small", "medium", "large"}:
            # Left as text, and frozen so the URL inside is not turned into a link later.
            return self.atom(str(escape(self.plain(m.group(0)))))
        return self.atom(self._image(url, f"b24-chat-image b24-chat-image--{size}"))

    def _icon(self, m: re.Match[str]) -> str:
        spec = self.plain(m.group(1)).replace("\xa0", " ")
        parts = spec.split(None, 1)
        url = _safe_url(parts[0], self.base_url) if parts else None
        if url is None:
            return m.group(0)
        options = parts[1] if len(parts) > 1 else ""

        def number(name: str) -> int | None:
            found = re.search(rf"(?:^|\s){name}=(\d{{1,6}})", options, re.IGNORECASE)
            return int(found.group(1)) if found else None

        width = height = number("size")
        if width is None:
            width, height = number("width"), number("height")
            width, height = width or height or 20, height or width or 20
        width, height = max(1, min(width, 100)), max(1, min(height or width, 100))
        title = None
        found = re.search(r"(?:^|\s)title=(.*)", options, re.IGNORECASE | re.DOTALL)
        if found:
            title = re.split(r"\s(?:width|height|size)=", found.group(1), flags=re.IGNORECASE)[0]
            title = title.strip().strip("\"'").strip() or None
        attrs = _attrs(
            class_="b24-chat-icon",
            src=url,
            width=width,
            height=height,
            alt=title or "",
            title=title,
        )
        return self.atom(f"<img{attrs}>")

    def _url_tag(self, m: re.Match[str]) -> str:
        target, inner = m.group(1), m.group(2)
        url = _safe_url(self.plain(target if target is not None else inner).strip(), self.base_url)
        if url is None:
            return inner  # Bitrix shows the text without a link
        if (
            target is None
            or not inner.strip()
            or self.plain(inner).strip() == self.plain(target).strip()
        ):
            return self._link_to_self(self.plain(target if target is not None else inner), url)
        return self.wrap(
            "a", inner, _attrs(class_="b24-chat-link", href=url, target="_blank", rel=_LINK_REL)
        )

    def _link_to_self(self, shown: str, url: str) -> str:
        """A link whose text is its own URL; image URLs are shown as the image (§3 image links)."""
        if _is_image_url(url):
            return self.atom(self._image(url, "b24-chat-image"))
        return self.atom(f"{_link_open(url, 'b24-chat-link')}{escape(shown.strip())}</a>")

    def _bare_urls(self, s: str) -> str:
        """Link plain http(s) URLs, as the server does before delivery, but not inside links."""
        out = []
        depth = 0
        for part in re.split(r"(\x00\d+\x00)", s):
            token = _TOKEN_RE.fullmatch(part)
            if token:
                piece = self.pieces[int(token.group(1))]
                if piece.tag == "a":
                    depth += {"open": 1, "close": -1}.get(piece.kind, 0)
                out.append(part)
            else:
                out.append(_BARE_URL_RE.sub(self._bare_url, part) if depth <= 0 else part)
        return "".join(out)

    def _bare_url(self, m: re.Match[str]) -> str:
        matched = m.group(0)
        raw = html.unescape(matched)
        trimmed = raw.rstrip(".,;:!?'")
        if trimmed.endswith(")") and trimmed.count("(") < trimmed.count(")"):
            trimmed = trimmed[:-1].rstrip(".,;:!?'")
        escaped = str(escape(trimmed))
        url = _safe_url(trimmed, self.base_url)
        if url is None or not matched.startswith(escaped):
            return matched
        return self._link_to_self(trimmed, url) + matched[len(escaped) :]

    def _fonts(self, s: str) -> str:
        for tag, pattern in _FONT_RES:

            def font(m: re.Match[str], tag: str = tag) -> str:
                return self.wrap(tag, m.group(1))

            s = _replace_nested(pattern, font, s)

        def size(m: re.Match[str]) -> str:
            px = max(8, min(int(m.group(1)), 30))
            return self.wrap("span", m.group(2), _attrs(style=_style(font_size=px)))

        def color(m: re.Match[str]) -> str:
            hex_color = _hex_color(m.group(1))
            return self.wrap("span", m.group(2), _attrs(style=_style(color=hex_color)))

        s = _replace_nested(_SIZE_RE, size, s)
        return _replace_nested(_COLOR_RE, color, s)

    def _like(self, m: re.Match[str]) -> str:
        kind = m.group(1).lower()
        label = escape(gettext("Like") if kind == "like" else gettext("Dislike"))
        return self.atom(f'<span class="b24-chat-vote b24-chat-vote--{kind}">{label}</span>')

    def _rating(self, m: re.Match[str]) -> str:
        stars = int(m.group(1))
        title = escape(gettext("Rating - %(stars)s") % {"stars": stars})
        return self.atom(
            f'<span class="b24-chat-rating" title="{title}">'
            f'<span class="b24-chat-rating__on">{"★" * stars}</span>{"★" * (5 - stars)}</span>'
        )

    def _mention(
        self, inner: str, kind: str, *, highlight: bool = False, title: str | None = None
    ) -> str:
        css = f"b24-chat-mention b24-chat-mention--{kind}"
        if highlight:
            css += " b24-chat-mention--highlight"
        return self.wrap("span", inner, _attrs(class_=css, title=title))

    def _user(self, m: re.Match[str]) -> str:
        user_id, name = m.group(1).lower(), m.group(3)
        if user_id == "all":
            everyone = str(escape(pgettext("chat mention of everyone", "all")))
            return self._mention(name if name.strip() else everyone, "user", highlight=True)
        if int(user_id) == 0:
            return name
        fallback = str(escape(gettext("User %(id)s") % {"id": int(user_id)}))
        return self._mention(name if name.strip() else fallback, "user")

    def _chat(self, m: re.Match[str]) -> str:
        lines, chat_id, name = m.group(1), int(m.group(2)), m.group(3)
        if chat_id == 0:
            return name
        return self._mention(
            name if name.strip() else str(escape(gettext("Chat %(id)s") % {"id": chat_id})),
            "lines" if lines else "chat",
        )

    def _context(self, m: re.Match[str]) -> str:
        text = m.group(2)
        return self._mention(text, "context") if text.strip() else ""

    def _call(self, m: re.Match[str]) -> str:
        number, inner = m.group(1), m.group(2)
        phone = self.plain(number if number is not None else inner).strip()
        if not _PHONE_RE.fullmatch(phone):
            return inner
        return self._mention(inner if inner.strip() else str(escape(phone)), "call", title=phone)

    def _timestamp(self, m: re.Match[str]) -> str:
        formatter = _DATE_FORMATS.get(m.group(2).upper())
        if formatter is None:
            return m.group(0)
        try:
            moment = datetime.fromtimestamp(int(m.group(1)), tz=self.now_tz or UTC)
        except (OverflowError, OSError, ValueError):
            return m.group(0)
        attrs = _attrs(class_="b24-chat-timestamp", datetime=moment.isoformat())
        return self.atom(f"<time{attrs}>{escape(formatter(moment))}</time>")

    def _date(self, m: re.Match[str]) -> str:
        shown = " ".join(_ANY_TAG_RE.sub("", self.plain(m.group(2))).split())
        attrs = _attrs(class_="b24-chat-command b24-chat-command--date", title=m.group(1))
        return self.atom(f"<span{attrs}>{escape(shown)}</span>")

    # -- final assembly ------------------------------------------------------------------------

    def finish(self, s: str) -> str:
        """Swap tokens back, turning breaks into <br> and re-nesting overlapping tags."""
        out: list[tuple[str, str]] = []  # (kind, html); kind: text | br | block | inline
        stack: list[_Piece] = []

        def emit(piece: _Piece) -> None:
            out.append(("block" if piece.block else "inline", piece.html))

        for part in _SPLIT_RE.split(s):
            if not part:
                continue
            if part == _BR:
                out.append(("br", "<br>"))
                continue
            token = _TOKEN_RE.fullmatch(part)
            if token is None:
                out.append(("text", part))
                continue
            piece = self.pieces[int(token.group(1))]
            if piece.kind == "atom":
                emit(piece)
            elif piece.kind == "open":
                emit(piece)
                stack.append(piece)
            elif any(p.pair == piece.pair for p in stack):
                reopen: list[_Piece] = []
                while stack[-1].pair != piece.pair:
                    inner = stack.pop()
                    out.append(("block" if inner.block else "inline", f"</{inner.tag}>"))
                    reopen.append(inner)
                stack.pop()
                emit(piece)
                for again in reversed(reopen):
                    emit(again)
                    stack.append(again)
        while stack:
            piece = stack.pop()
            out.append(("block" if piece.block else "inline", f"</{piece.tag}>"))

        # A block element already starts a new line: drop one break right before and after it.
        kept: list[tuple[str, str]] = []
        for index, (kind, markup) in enumerate(out):
            if kind == "br":
                before = out[index - 1][0] if index else ""
                after = out[index + 1][0] if index + 1 < len(out) else ""
                if before == "block" or after == "block":
                    continue
            kept.append((kind, markup))
        if kept and kept[-1][0] == "br":
            kept.pop()
        return "".join(markup for _, markup in kept)


def _replace_nested(
    pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str], s: str
) -> str:
    """Apply an innermost-pair pattern repeatedly: Bitrix resolves up to 10 nesting levels."""
    for _ in range(10):
        s, count = pattern.subn(replace, s)
        if not count:
            break
    return s


def render_bbcode(
    text: str, *, now_tz: tzinfo | None = None, base_url: str | None = None
) -> SafeString:
    """MESSAGE text with Bitrix BB codes -> safe HTML, as the im web client draws it.

    ``now_tz`` is the viewer's time zone for ``[timestamp]`` (UTC when omitted); ``base_url`` is
    the portal address that relative ``/path`` links resolve against.
    """
    renderer = _BBCode(base_url=base_url, now_tz=now_tz)
    return mark_safe(renderer.render(_text(text)))  # noqa: S308 - every piece is escaped above


# ---------------------------------------------------------------------------------------------
# ATTACH
# ---------------------------------------------------------------------------------------------


_FILE_SIZE_UNITS = {
    "B": pgettext_lazy("file size unit", "B"),
    "KB": pgettext_lazy("file size unit", "KB"),
    "MB": pgettext_lazy("file size unit", "MB"),
    "GB": pgettext_lazy("file size unit", "GB"),
    "TB": pgettext_lazy("file size unit", "TB"),
}


def format_file_size(size: object) -> str:
    """Bytes in binary steps with one decimal from KB up: 1500000 -> "1.4 MB"."""
    if isinstance(size, bool) or not isinstance(size, int | str):
        return ""
    text = str(size).strip()
    if not text.isdigit() or len(text) > 18:
        return ""
    number = int(text)
    value = float(number)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            if unit == "B":
                return f"{int(value)} {_FILE_SIZE_UNITS[unit]}"
            return f"{value:.1f}".removesuffix(".0") + f" {_FILE_SIZE_UNITS[unit]}"
        value /= 1024
    return ""  # pragma: no cover - the loop always returns


def shorten_file_name(name: str, limit: int = 70) -> str:
    """Cut a long file name in the middle, keeping its extension: "very…long.pdf"."""
    if len(name) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    suffix = f".{ext}" if dot and stem and len(ext) <= 10 else ""
    keep = limit - len(suffix) - 1
    return name[: len(name) - len(suffix)][:keep].rstrip() + "…" + suffix


_FILE_KINDS: Mapping[str, tuple[str, ...]] = {
    "pdf": ("pdf",),
    "doc": ("doc", "docx", "odt", "rtf", "txt", "md"),
    "xls": ("xls", "xlsx", "ods", "csv"),
    "ppt": ("ppt", "pptx", "odp", "key"),
    "zip": ("zip", "rar", "7z", "gz", "tgz", "tar", "bz2", "xz"),
    "img": ("jpg", "jpeg", "png", "gif", "webp", "svg", "bmp", "tif", "tiff", "heic"),
    "media": ("mp3", "wav", "ogg", "m4a", "mp4", "mov", "avi", "mkv", "webm"),
}


def _file_kind(name: str) -> tuple[str, str]:
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    for kind, extensions in _FILE_KINDS.items():
        if ext in extensions:
            return kind, ext
    return "file", ext if ext.isalnum() and len(ext) <= 4 else ""


def _items(value: object) -> list[Mapping[str, Any]]:
    """List-valued blocks may also arrive as one dict; keep only dict items."""
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, Mapping)]
    return []


def _one_line(value: object) -> str:
    return " ".join(_text(value).split())


@dataclass(frozen=True, slots=True)
class _AttachContext:
    color: str | None  # resolved hex, None when transparent
    base_url: str | None
    now_tz: tzinfo | None

    def bb(self, value: object) -> str:
        return render_bbcode(_text(value), now_tz=self.now_tz, base_url=self.base_url)

    def url(self, value: object) -> str | None:
        return _safe_url(value, self.base_url)


def _attach_color(attach: Mapping[str, Any]) -> str | None:
    raw = attach.get("COLOR")
    if isinstance(raw, str) and raw.strip().lower() == "transparent":
        return None
    return _hex_color(raw) or _token_color(attach.get("COLOR_TOKEN")) or DEFAULT_ATTACH_COLOR


def _block_message(value: object, ctx: _AttachContext) -> str:
    if isinstance(value, Mapping):
        value = value.get("TEXT")
    body = ctx.bb(value)
    return f'<div class="b24-chat-attach-message">{body}</div>' if body else ""


def _image_item(item: Mapping[str, Any], ctx: _AttachContext, *, link: object = None) -> str:
    target = ctx.url(link if link is not None else item.get("LINK"))
    source = ctx.url(item.get("PREVIEW")) or target
    if source is None:
        return ""
    width, height = _int(item.get("WIDTH")), _int(item.get("HEIGHT"))
    if width and height and width > 250:
        # The client scales wide images down to 250px wide, keeping the ratio.
        height, width = max(1, round(height * 250 / width)), 250
    elif not (width and height):
        width = height = None
    name = _one_line(item.get("NAME")) or None
    img_attrs = _attrs(
        class_="b24-chat-attach-image__img",
        src=source,
        alt=name or "",
        title=name,
        width=width,
        height=height,
        loading="lazy",
    )
    img = f"<img{img_attrs}>"
    if target is None:
        return f'<span class="b24-chat-attach-image">{img}</span>'
    return f"{_link_open(target, 'b24-chat-attach-image')}{img}</a>"


def _block_image(value: object, ctx: _AttachContext) -> str:
    images = "".join(_image_item(item, ctx) for item in _items(value))
    return f'<div class="b24-chat-attach-images">{images}</div>' if images else ""


def _description(item: Mapping[str, Any]) -> str:
    """HTML wins over DESC; we never pass HTML through, only its text."""
    raw_html = _text(item.get("HTML"))
    if raw_html.strip():
        return html.unescape(strip_tags(raw_html))
    return _text(item.get("DESC"))


def _block_link(value: object, ctx: _AttachContext) -> str:
    rows = []
    for item in _items(value):
        url = ctx.url(item.get("LINK"))
        name = _one_line(item.get("NAME"))
        parts = []
        if url:
            parts.append(
                f"{_link_open(url, 'b24-chat-attach-link__name')}{escape(name or url)}</a>"
            )
        elif name:
            parts.append(f'<span class="b24-chat-attach-link__label">{escape(name)}</span>')
        desc = ctx.bb(_description(item))
        if desc:
            parts.append(f'<div class="b24-chat-attach-link__desc">{desc}</div>')
        if ctx.url(item.get("PREVIEW")):
            preview = _image_item(item, ctx, link=item.get("LINK") or item.get("PREVIEW"))
            parts.append(f'<div class="b24-chat-attach-link__image">{preview}</div>')
        if parts:
            rows.append(f'<div class="b24-chat-attach-link">{"".join(parts)}</div>')
    return "".join(rows)


def _block_rich_link(value: object, ctx: _AttachContext) -> str:
    rows = []
    for item in _items(value):
        url = ctx.url(item.get("LINK"))
        name = _one_line(item.get("NAME")) or (url or "")
        parts = []
        if ctx.url(item.get("PREVIEW")):
            preview = _image_item(item, ctx, link=item.get("LINK") or item.get("PREVIEW"))
            parts.append(f'<div class="b24-chat-rich__image">{preview}</div>')
        card = []
        if name:
            title = escape(name)
            if url:
                card.append(f"{_link_open(url, 'b24-chat-rich__name')}{title}</a>")
            else:
                card.append(f'<div class="b24-chat-rich__name">{title}</div>')
        desc = " ".join(html.unescape(_description(item)).split())
        if desc:
            card.append(f'<div class="b24-chat-rich__desc">{escape(desc)}</div>')
        if card:
            parts.append(f'<div class="b24-chat-rich__card">{"".join(card)}</div>')
        if parts:
            rows.append(f'<div class="b24-chat-rich">{"".join(parts)}</div>')
    return "".join(rows)


def _block_user(value: object, ctx: _AttachContext) -> str:
    rows = []
    for item in _items(value):
        name = _one_line(item.get("NAME"))
        if not name:
            continue
        avatar_url = ctx.url(item.get("AVATAR"))
        if avatar_url:
            img = f"<img{_attrs(class_='b24-chat-avatar__img', src=avatar_url, alt='')}>"
            avatar = f'<span class="b24-chat-avatar">{img}</span>'
        else:
            kind = _text(item.get("AVATAR_TYPE")).strip().lower()
            kind = kind if kind in {"user", "chat", "bot"} else "user"
            attrs = _attrs(
                class_=f"b24-chat-avatar b24-chat-avatar--{kind}",
                style=_style(background_color=ctx.color),
            )
            avatar = f"<span{attrs}></span>"
        url = ctx.url(item.get("LINK"))
        if url:
            label = f"{_link_open(url, 'b24-chat-attach-user__name')}{escape(name)}</a>"
        else:
            label = f'<span class="b24-chat-attach-user__name">{escape(name)}</span>'
        rows.append(f'<div class="b24-chat-attach-user">{avatar}{label}</div>')
    return "".join(rows)


_GRID_DISPLAY = {"block": "block", "line": "line", "card": "line", "row": "row", "column": "row"}


def _block_grid(value: object, ctx: _AttachContext) -> str:
    cells = []
    for item in _items(value):
        display = _text(item.get("DISPLAY")).strip().lower()
        # TABLE has no client component; the docs say older clients draw it like ROW.
        mode = "row" if display == "table" else _GRID_DISPLAY.get(display, "block")
        name = escape(_one_line(item.get("NAME")))
        value_html = ctx.bb(item.get("VALUE"))
        if not name and not value_html and mode != "line":
            continue
        if value_html:
            url = ctx.url(item.get("LINK"))
            if url:
                value_html = f"{_link_open(url, 'b24-chat-grid__link')}{value_html}</a>"
        width = _int(item.get("WIDTH")) if value_html else None
        value_color = _hex_color(item.get("COLOR")) or _token_color(item.get("COLOR_TOKEN"))
        value_attrs = _attrs(class_="b24-chat-grid__value", style=_style(color=value_color))
        if mode == "row":
            name_attrs = _attrs(
                class_="b24-chat-grid__name",
                colspan=2 if not value_html else None,
                style=_style(width=width),
            )
            row = ""
            if name:
                row += f"<td{name_attrs}>{name}</td>"
            if value_html:
                span = _attrs(colspan=2 if not name else None)
                row += f"<td{value_attrs}{span}>{value_html}</td>"
            cells.append(f'<table class="b24-chat-grid__row"><tbody><tr>{row}</tr></tbody></table>')
            continue
        inner = f'<div class="b24-chat-grid__name">{name}</div>' if name else ""
        if value_html:
            inner += f"<div{value_attrs}>{value_html}</div>"
        attrs = _attrs(
            class_=f"b24-chat-grid__item b24-chat-grid__item--{mode}", style=_style(width=width)
        )
        cells.append(f"<div{attrs}>{inner}</div>")
    return f'<div class="b24-chat-grid">{"".join(cells)}</div>' if cells else ""


def _block_file(value: object, ctx: _AttachContext) -> str:
    rows = []
    for item in _items(value):
        url = ctx.url(item.get("LINK"))
        if url is None:
            continue
        name = _one_line(item.get("NAME")) or url.split("?", 1)[0].rstrip("/").rpartition("/")[2]
        kind, ext = _file_kind(name)
        icon = (
            f'<span class="b24-chat-file-icon b24-chat-file-icon--{kind}" aria-hidden="true">'
            f'<span class="b24-chat-file-icon__ext">{escape(ext.upper())}</span></span>'
        )
        size = format_file_size(item.get("SIZE"))
        body = f'<span class="b24-chat-attach-file__name">{escape(shorten_file_name(name))}</span>'
        if size:
            body += f'<span class="b24-chat-attach-file__size">{escape(size)}</span>'
        rows.append(
            f"{_link_open(url, 'b24-chat-attach-file', title=name)}{icon}"
            f'<span class="b24-chat-attach-file__body">{body}</span></a>'
        )
    return f'<div class="b24-chat-attach-files">{"".join(rows)}</div>' if rows else ""


def _block_delimiter(value: object, ctx: _AttachContext) -> str:
    item = value if isinstance(value, Mapping) else {}
    width = _int(item.get("SIZE")) or 200
    color = _hex_color(item.get("COLOR")) or ctx.color
    style = _style(width=width, background_color=color)
    return f"<div{_attrs(class_='b24-chat-attach-delimiter', style=style)}></div>"


_BLOCK_RENDERERS: Mapping[str, Callable[[object, _AttachContext], str]] = {
    "MESSAGE": _block_message,
    "LINK": _block_link,
    "RICH_LINK": _block_rich_link,
    "USER": _block_user,
    "GRID": _block_grid,
    "IMAGE": _block_image,
    "FILE": _block_file,
    "DELIMITER": _block_delimiter,
}


def _render_one_attach(
    attach: Mapping[str, Any], *, base_url: str | None, now_tz: tzinfo | None
) -> str:
    ctx = _AttachContext(color=_attach_color(attach), base_url=base_url, now_tz=now_tz)
    blocks = []
    for block in _items(attach.get("BLOCKS")):
        for key, value in block.items():
            renderer = _BLOCK_RENDERERS.get(str(key).upper())
            if renderer is not None:
                blocks.append(renderer(value, ctx))
    content = "".join(blocks)
    if not content:
        return ""
    bar = ""
    if ctx.color:
        style = _style(background_color=ctx.color)
        bar = f"<div{_attrs(class_='b24-chat-attach__bar', style=style)}></div>"
    return (
        f'<div class="b24-chat-attach">{bar}'
        f'<div class="b24-chat-attach__content">{content}</div></div>'
    )


def render_attach(
    attach: Mapping[str, Any] | Sequence[Any] | None,
    *,
    base_url: str | None = None,
    now_tz: tzinfo | None = None,
) -> SafeString:
    """A normalised ATTACH (``{"COLOR"?, "COLOR_TOKEN"?, "BLOCKS": [...]}``) -> bar + blocks.

    Also accepts the short form (a list of blocks) and a list of full attaches (a message's ATTACH
    parameter as the client stores it); blocks of unknown type render nothing.
    """
    if isinstance(attach, Mapping):
        attaches: list[Mapping[str, Any]] = [attach]
    elif isinstance(attach, list | tuple):
        items = _items(attach)
        if items and all("BLOCKS" in item for item in items):
            attaches = items
        else:
            attaches = [{"BLOCKS": items}]
    else:
        attaches = []
    rendered = (_render_one_attach(a, base_url=base_url, now_tz=now_tz) for a in attaches)
    return mark_safe("".join(rendered))  # noqa: S308 - built from escaped/validated parts


# ---------------------------------------------------------------------------------------------
# KEYBOARD
# ---------------------------------------------------------------------------------------------


def _render_button(button: Mapping[str, Any], base_url: str | None) -> str:
    if _text(button.get("TYPE")).strip().upper() == "NEWLINE":
        return '<div class="b24-chat-keyboard__newline"></div>'
    label = " ".join(_text(button.get("TEXT")).split())
    if not label:
        return ""
    display = "line" if _text(button.get("DISPLAY")).strip().upper() == "LINE" else "block"
    classes = ["b24-chat-button", f"b24-chat-button--{display}"]
    context = _text(button.get("CONTEXT")).strip().upper()
    if context == "MOBILE":
        classes.append("b24-chat-button--mobile-only")  # the web client hides these
    elif context == "DESKTOP":
        classes.append("b24-chat-button--desktop-only")
    disabled = _is_yes(button.get("DISABLED"))
    if disabled:
        classes.append("b24-chat-button--disabled")
    # OFF_BG_COLOR / OFF_TEXT_COLOR are stored by Bitrix but not read by the web client
    # (chat-rendering.md §5), so a disabled button keeps its normal colours here too.
    style = _style(
        width=_int(button.get("WIDTH")),
        background_color=_hex_color(button.get("BG_COLOR")),
        color=_hex_color(button.get("TEXT_COLOR")),
    )
    url = None if disabled else _safe_url(button.get("LINK"), base_url)
    if url:
        attrs = _attrs(
            class_=" ".join(classes), href=url, target="_blank", rel=_LINK_REL, style=style
        )
        return f"<a{attrs}>{escape(label)}</a>"
    attrs = _attrs(
        class_=" ".join(classes), style=style, aria_disabled="true" if disabled else None
    )
    return f"<span{attrs}>{escape(label)}</span>"


def render_keyboard(
    keyboard: Mapping[str, Any] | Sequence[Any] | None, *, base_url: str | None = None
) -> SafeString:
    """A normalised KEYBOARD (``{"BUTTONS": [...]}`` or a bare button list) -> button rows."""
    buttons = _items(keyboard.get("BUTTONS")) if isinstance(keyboard, Mapping) else _items(keyboard)
    rendered = [_render_button(button, base_url) for button in buttons]
    if not any(markup.startswith(("<a", "<span")) for markup in rendered):
        return mark_safe("")
    inner = "".join(rendered)
    return mark_safe(f'<div class="b24-chat-keyboard">{inner}</div>')  # noqa: S308


# ---------------------------------------------------------------------------------------------
# Whole message
# ---------------------------------------------------------------------------------------------


def render_message(
    *,
    message: str,
    attach: Mapping[str, Any] | Sequence[Any] | None = None,
    keyboard: Mapping[str, Any] | Sequence[Any] | None = None,
    sent_at: datetime | None = None,
    self_side: bool = False,
    now_tz: tzinfo | None = None,
    base_url: str | None = None,
) -> SafeString:
    """One chat message: bubble (text, attach, time) with the keyboard under it.

    Put the result inside ``<div class="b24-chat">`` (add ``b24-chat--mobile`` for the narrow
    layout). ``sent_at`` is shown as HH:MM in ``now_tz`` when both are given.
    """
    side = "self" if self_side else "opponent"
    body = []
    text = render_bbcode(message, now_tz=now_tz, base_url=base_url)
    if text:
        body.append(f'<div class="b24-chat-message__text">{text}</div>')
    attach_html = render_attach(attach, base_url=base_url, now_tz=now_tz)
    if attach_html:
        body.append(f'<div class="b24-chat-message__attach">{attach_html}</div>')
    if sent_at is not None:
        moment = sent_at.astimezone(now_tz) if now_tz and sent_at.tzinfo else sent_at
        time_attrs = _attrs(class_="b24-chat-message__time", datetime=moment.isoformat())
        body.append(
            f'<div class="b24-chat-message__bottom"><time{time_attrs}>{moment:%H:%M}</time></div>'
        )
    keyboard_html = render_keyboard(keyboard, base_url=base_url)
    bottom = (
        f'<div class="b24-chat-message__keyboard">{keyboard_html}</div>' if keyboard_html else ""
    )
    return mark_safe(  # noqa: S308 - parts are rendered by the safe functions above
        f'<div class="b24-chat-message b24-chat-message--{side}">'
        f'<div class="b24-chat-message__body">{"".join(body)}</div>{bottom}</div>'
    )
