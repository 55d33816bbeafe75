"""Tests for b24app.messaging.render: Bitrix24 chat message -> HTML (chat-rendering.md)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b24app.messaging import payload as payload_rules
from b24app.messaging import render

# ---------------------------------------------------------------------------------------------
# A strict checker for everything the renderer emits
# ---------------------------------------------------------------------------------------------

ALLOWED: dict[str, set[str]] = {
    "a": {"class", "href", "target", "rel", "title", "style"},
    "b": set(),
    "i": set(),
    "u": set(),
    "s": set(),
    "br": set(),
    "div": {"class", "style"},
    "span": {"class", "style", "title", "aria-hidden", "aria-disabled"},
    "img": {"class", "src", "alt", "title", "width", "height", "loading"},
    "time": {"class", "datetime"},
    "table": {"class"},
    "tbody": set(),
    "tr": set(),
    "td": {"class", "style", "colspan"},
}
VOID = {"br", "img"}
_DECL = r"(?:font-size|width): \d+px|(?:background-)?color: #(?:[0-9a-f]{3}|[0-9a-f]{6})"
STYLE_RE = re.compile(rf"(?:{_DECL})(?:; (?:{_DECL}))*")
# Quotes and angle brackets can only appear escaped; a single quote is legal in a URL.
URL_RE = re.compile(r"(?:https?://[^\s\"<>\\]+|/(?!/)[^\s\"<>\\]*)", re.IGNORECASE)
INT_RE = re.compile(r"\d{1,6}")


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags = 0
        self.stack: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags += 1
        if tag not in ALLOWED:
            self.problems.append(f"tag <{tag}>")
            return
        for name, value in attrs:
            value = value or ""
            if name.startswith("on") or name not in ALLOWED[tag]:
                self.problems.append(f"attribute {name} on <{tag}>")
            lowered = re.sub(r"\s", "", value).lower()
            # title/alt are shown as text (e.g. a file called "javascript:x"); no other
            # attribute may start with a script scheme. A script scheme later in an http(s)
            # URL's path is just text of that path (href/src must also match URL_RE below).
            scheme = lowered.startswith(("javascript:", "data:", "vbscript:"))
            if scheme and name not in {"title", "alt"}:
                self.problems.append(f"script URL in {name}={value!r}")
            if name in {"href", "src"} and not URL_RE.fullmatch(value):
                self.problems.append(f"unsafe URL {name}={value!r}")
            if name == "style" and not STYLE_RE.fullmatch(value):
                self.problems.append(f"unvalidated style {value!r}")
            if name in {"width", "height", "colspan"} and not INT_RE.fullmatch(value):
                self.problems.append(f"non-integer {name}={value!r}")
            if name == "target" and value != "_blank":
                self.problems.append(f"target={value!r}")
            if name == "rel" and value != "noopener noreferrer":
                self.problems.append(f"rel={value!r}")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        self.tags += 1
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"unbalanced </{tag}> (open: {self.stack})")
            return
        self.stack.pop()

    def handle_comment(self, data: str) -> None:
        self.problems.append("comment")

    def handle_decl(self, decl: str) -> None:
        self.problems.append("declaration")

    def handle_pi(self, data: str) -> None:
        self.problems.append("processing instruction")


def assert_safe_html(markup: str) -> None:
    """Only allow-listed tags and attributes, validated URLs/styles, balanced, nothing sneaked."""
    assert "<script" not in markup.lower()
    checker = _Checker()
    checker.feed(markup)
    checker.close()
    assert not checker.problems, (checker.problems, markup)
    assert not checker.stack, (f"unclosed {checker.stack}", markup)
    # Every "<" must have started one of the tags seen above; user text only has "&lt;".
    assert markup.count("<") == checker.tags, markup


@pytest.mark.parametrize(
    "markup",
    [
        '<a href="javascript:alert(1)">x</a>',
        '<a href="//evil.example">x</a>',
        '<img src="x" onerror="alert(1)">',
        '<div style="background:url(x)">x</div>',
        '<span class="a" onclick="x">y</span>',
        '<a href="https://e.com/" onmouseover="x">y</a>',
        "<script>alert(1)</script>",
        "<svg><b>x</b></svg>",
        "<b>unclosed",
        "<b><i>x</b></i>",
        '<td width="1px">x</td>',
    ],
)
def test_checker_rejects_unsafe_markup(markup: str) -> None:
    with pytest.raises(AssertionError):
        assert_safe_html(markup)


def bb(text: str, **kwargs: Any) -> str:
    out = str(render.render_bbcode(text, **kwargs))
    assert_safe_html(out)
    return out


def attach(*blocks: dict[str, Any], **top: Any) -> str:
    out = str(render.render_attach({"ID": 1, **top, "BLOCKS": list(blocks)}))
    assert_safe_html(out)
    return out


def keyboard(*buttons: dict[str, Any]) -> str:
    out = str(render.render_keyboard({"BUTTONS": list(buttons)}))
    assert_safe_html(out)
    return out


def css_path() -> Path:
    return Path(__file__).resolve().parents[2] / "static" / "css" / "chat.css"


# ---------------------------------------------------------------------------------------------
# MESSAGE: font tags
# ---------------------------------------------------------------------------------------------


def test_bold_italic_underline_strike_become_tags() -> None:
    assert bb("[b]a[/b] [i]b[/i] [u]c[/u] [s]d[/s]") == "<b>a</b> <i>b</i> <u>c</u> <s>d</s>"


def test_bold_and_italic_nest() -> None:
    assert bb("[b]x [i]y[/i] z[/b]") == "<b>x <i>y</i> z</b>"


def test_same_tag_nests_several_levels() -> None:
    assert bb("[b]1[b]2[b]3[/b][/b][/b]") == "<b>1<b>2<b>3</b></b></b>"


def test_tags_are_case_insensitive() -> None:
    assert bb("[B]a[/b] [I]b[/I]") == "<b>a</b> <i>b</i>"


def test_overlapping_tags_are_repaired_into_valid_nesting() -> None:
    assert bb("[b]a[i]b[/b]c[/i]") == "<b>a<i>b</i></b><i>c</i>"


def test_unclosed_tag_stays_literal() -> None:
    assert bb("[b]open only") == "[b]open only"


def test_unknown_tags_stay_literal() -> None:
    assert bb("[foo]bar[/foo] [quote]q[/quote]") == "[foo]bar[/foo] [quote]q[/quote]"


@pytest.mark.parametrize(
    ("tag", "px"),
    [
        ("[size=20]", 20),
        ("[size=2]", 8),
        ("[size=99]", 30),
        ("[size=14pt]", 14),
        ("[size=16px]", 16),
    ],
)
def test_size_is_clamped_between_8_and_30_px(tag: str, px: int) -> None:
    assert bb(f"{tag}x[/size]") == f'<span style="font-size: {px}px">x</span>'


def test_size_without_digits_stays_literal() -> None:
    assert bb("[size=big]x[/size]") == "[size=big]x[/size]"


def test_color_accepts_three_and_six_digit_hex() -> None:
    assert bb("[color=#F00]r[/color]") == '<span style="color: #f00">r</span>'
    assert bb("[color=#00ff00]g[/color]") == '<span style="color: #00ff00">g</span>'


@pytest.mark.parametrize("value", ["red", "#ff00", "#gggggg", "rgb(1,2,3)", "#fff;x:y", '"#fff"'])
def test_color_other_forms_stay_literal(value: str) -> None:
    out = bb(f"[color={value}]x[/color]")
    assert "<span" not in out
    assert out.endswith("x[/color]")


# ---------------------------------------------------------------------------------------------
# MESSAGE: breaks, spaces, escaping
# ---------------------------------------------------------------------------------------------


def test_newline_br_tag_and_hash_br_become_breaks() -> None:
    assert bb("a\nb[br]c[BR]d#BR#e") == "a<br>b<br>c<br>d<br>e"


def test_crlf_counts_as_one_newline() -> None:
    assert bb("a\r\nb") == "a<br>b"


def test_trailing_break_is_dropped_and_text_trimmed() -> None:
    assert bb("  hello[br]\n ") == "hello"


def test_four_spaces_become_four_nbsp() -> None:
    assert bb("a    b") == "a" + "&nbsp;" * 4 + "b"
    assert bb("a\tb") == "a" + "&nbsp;" * 4 + "b"


def test_raw_html_is_shown_as_text() -> None:
    assert bb("<b>x</b> & \"q\" 'a'") == ("&lt;b&gt;x&lt;/b&gt; &amp; &quot;q&quot; &#x27;a&#x27;")


def test_control_characters_are_removed() -> None:
    assert bb("a\x00b\x01c\x07d") == "abcd"


def test_empty_text_renders_nothing() -> None:
    assert bb("") == ""
    assert bb("   \n ") == ""


# ---------------------------------------------------------------------------------------------
# MESSAGE: links and images
# ---------------------------------------------------------------------------------------------

LINK_ATTRS = 'target="_blank" rel="noopener noreferrer"'


def test_url_tag_links_to_its_text() -> None:
    assert bb("[url]https://example.com/a?b=1&c=2[/url]") == (
        '<a class="b24-chat-link" href="https://example.com/a?b=1&amp;c=2" '
        f"{LINK_ATTRS}>https://example.com/a?b=1&amp;c=2</a>"
    )


def test_url_tag_with_target_keeps_formatted_text() -> None:
    assert bb("[URL=https://example.com]the [b]site[/b][/URL]") == (
        f'<a class="b24-chat-link" href="https://example.com" {LINK_ATTRS}>the <b>site</b></a>'
    )


def test_relative_url_resolves_against_base_url() -> None:
    out = bb("[url=/crm/deal/1/]deal[/url]", base_url="https://portal.bitrix24.com")
    assert 'href="https://portal.bitrix24.com/crm/deal/1/"' in out


def test_relative_url_without_base_stays_a_path() -> None:
    assert 'href="/crm/"' in bb("[url=/crm/]crm[/url]")


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>x</script>",
        "vbscript:msgbox",
        "//evil.example/x",
        "/\\evil.example",
        "ftp://example.com",
        "mailto:a@b.c",
        "http://",
    ],
)
def test_javascript_url_is_shown_as_text(url: str) -> None:
    out = bb(f"[url={url}]click[/url] [url]{url}[/url]")
    assert "<a" not in out
    assert out.startswith("click ")


@pytest.mark.parametrize(
    ("url", "linked_part"),
    [("https://exa mple.com", "https://exa"), ('https://e.com/"onmouseover="x', "https://e.com/")],
)
def test_url_with_space_or_quote_is_text_and_only_its_clean_prefix_autolinks(
    url: str, linked_part: str
) -> None:
    out = bb(f"[url={url}]click[/url] [url]{url}[/url]")
    assert out.startswith("click ")
    assert re.findall(r'href="([^"]*)"', out) == [linked_part]


def test_bare_url_is_linked_without_trailing_punctuation() -> None:
    assert bb("see https://example.com/x.") == (
        f'see <a class="b24-chat-link" href="https://example.com/x" {LINK_ATTRS}>'
        "https://example.com/x</a>."
    )


def test_bare_url_stops_at_escaped_html() -> None:
    out = bb('https://example.com/a"b<c')
    assert 'href="https://example.com/a"' in out
    assert "&quot;b&lt;c" in out


def test_bare_url_inside_a_link_text_is_not_linked_again() -> None:
    out = bb("[url=https://a.example]go to https://b.example[/url]")
    assert out.count("<a") == 1


def test_image_url_becomes_inline_image() -> None:
    out = bb("https://example.com/cat.PNG?size=2")
    assert out == (
        f'<a class="b24-chat-image" href="https://example.com/cat.PNG?size=2" {LINK_ATTRS}>'
        '<img class="b24-chat-image__img" src="https://example.com/cat.PNG?size=2" alt="" '
        'loading="lazy"></a>'
    )


def test_url_tag_with_image_url_shows_the_image() -> None:
    assert "<img" in bb("[url]https://example.com/a.webp[/url]")


def test_url_tag_with_own_text_to_image_stays_a_link() -> None:
    out = bb("[url=https://example.com/a.jpg]photo[/url]")
    assert "<img" not in out
    assert ">photo</a>" in out


@pytest.mark.parametrize(
    "url", ["https://example.com/docs/pub/a.png", "https://example.com/a.png?logout=yes"]
)
def test_public_docs_and_logout_image_urls_stay_links(url: str) -> None:
    out = bb(url)
    assert "<img" not in out
    assert "<a " in out


@pytest.mark.parametrize("size", ["small", "medium", "large"])
def test_img_tag_with_size_renders_sized_image(size: str) -> None:
    out = bb(f"[img size={size}]https://example.com/a.jpg [/img]")
    assert f'class="b24-chat-image b24-chat-image--{size}"' in out
    assert 'src="https://example.com/a.jpg"' in out


@pytest.mark.parametrize(
    "text",
    [
        "[img size=huge]https://example.com/a.jpg[/img]",
        "[img]https://example.com/a.jpg[/img]",
        "[img size=small]https://example.com/a.txt[/img]",
        "[img size=small]javascript:alert(1)//a.png[/img]",
    ],
)
def test_img_tag_with_bad_size_or_url_stays_text(text: str) -> None:
    assert bb(text) == text


def test_icon_defaults_to_20px() -> None:
    assert bb("[icon=https://example.com/i.png]") == (
        '<img class="b24-chat-icon" src="https://example.com/i.png" width="20" height="20" alt="">'
    )


def test_icon_size_title_and_100px_cap() -> None:
    out = bb("[ICON=https://example.com/i.png size=500 title=Thumbs up]")
    assert 'width="100" height="100"' in out
    assert 'alt="Thumbs up" title="Thumbs up"' in out


def test_icon_width_alone_sets_both_sides() -> None:
    assert 'width="30" height="30"' in bb("[icon=https://example.com/i.png width=30]")


def test_icon_with_bad_url_stays_text() -> None:
    assert bb("[icon=javascript:alert(1)]") == "[icon=javascript:alert(1)]"


# ---------------------------------------------------------------------------------------------
# MESSAGE: mentions, commands, quotes, code, dates
# ---------------------------------------------------------------------------------------------


def test_user_mention_uses_inner_name() -> None:
    assert bb("[USER=12]Anna[/USER]") == (
        '<span class="b24-chat-mention b24-chat-mention--user">Anna</span>'
    )


def test_user_mention_without_name_shows_user_id() -> None:
    assert ">User 7<" in bb("[user=7][/user]")


def test_user_all_mention_is_highlighted() -> None:
    assert "b24-chat-mention--highlight" in bb("[USER=all]everyone[/USER]")


def test_user_zero_is_plain_text() -> None:
    assert bb("[user=0]Nobody[/user]") == "Nobody"


def test_chat_mention_and_open_line_mention() -> None:
    assert ">Chat 5<" in bb("[CHAT=5][/CHAT]")
    assert "b24-chat-mention--lines" in bb("[chat=imol|9]Line[/chat]")


def test_context_mention_links_text_and_drops_empty() -> None:
    assert "b24-chat-mention--context" in bb("[context=chat5/123]earlier[/context]")
    assert bb("[context=chat5/123][/context]") == ""


def test_call_mention_accepts_both_forms() -> None:
    out = bb("[CALL=+1 555 0100]ring[/CALL] [call]+7(900)123[/call]")
    assert out.count("b24-chat-mention--call") == 2
    assert 'title="+1 555 0100">ring<' in out


def test_call_with_non_phone_stays_text() -> None:
    assert bb("[call=javascript:x]ring[/call]") == "ring"


def test_put_and_send_show_text_with_command_tooltip() -> None:
    out = bb("[PUT=/help]Help [b]me[/b][/PUT] [send]/start[/send]")
    assert (
        '<span class="b24-chat-command b24-chat-command--put" title="/help">Help me</span>' in out
    )
    assert 'title="/start">/start</span>' in out


def test_arrow_quote_lines_merge_into_one_block() -> None:
    assert bb("intro\n>>one\n>>two\nafter") == (
        'intro<div class="b24-chat-quote"><div class="b24-chat-quote__wrap">one<br>two</div></div>'
        "after"
    )


def test_dash_quote_with_name_and_date_header() -> None:
    dashes = "-" * 54
    out = bb(f"{dashes}\nMaria [25.11.2026 10:00]\nquoted [b]x[/b]\n{dashes}\nreply")
    assert out == (
        '<div class="b24-chat-quote"><div class="b24-chat-quote__wrap">'
        '<div class="b24-chat-quote__name"><span class="b24-chat-quote__name-text">Maria</span>'
        '<span class="b24-chat-quote__name-time">25.11.2026 10:00</span></div>'
        "quoted <b>x</b></div></div>reply"
    )


def test_dash_quote_without_header() -> None:
    dashes = "-" * 54
    out = bb(f"{dashes}\njust text\n{dashes}")
    assert "b24-chat-quote__name" not in out
    assert "just text" in out


def test_dash_quote_needs_exactly_54_dashes() -> None:
    dashes = "-" * 55
    assert "b24-chat-quote" not in bb(f"{dashes}\ntext\n{dashes}")


def test_code_block_protects_its_content() -> None:
    assert bb("[code]\nif a < b:\n    [b]x[/b][/code]\nafter") == (
        '<div class="b24-chat-code">if a &lt; b:<br>&nbsp;&nbsp;&nbsp;&nbsp;[b]x[/b]</div>after'
    )


def test_timestamp_is_formatted_in_viewer_zone() -> None:
    moscow = timezone(timedelta(hours=3))
    out = bb("[timestamp=1764066600 format=SHORT_TIME_FORMAT]", now_tz=moscow)
    assert out == (
        '<time class="b24-chat-timestamp" datetime="2025-11-25T13:30:00+03:00">13:30</time>'
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("SHORT_DATE_FORMAT", "25.11.2025"),
        ("LONG_DATE_FORMAT", "25 November 2025"),
        ("FULL_DATE_FORMAT", "Tuesday, 25 November 2025"),
        ("LONG_TIME_FORMAT", "10:30:00"),
    ],
)
def test_timestamp_date_formats(code: str, expected: str) -> None:
    assert f">{expected}</time>" in bb(f"[timestamp=1764066600 format={code}]")


def test_timestamp_with_unknown_format_stays_literal() -> None:
    assert bb("[timestamp=1764066600 format=WHATEVER]") == "[timestamp=1764066600 format=WHATEVER]"


def test_date_tag_becomes_command_span() -> None:
    out = bb("[DATE=2026-11-25T10:00:00+03:00]tomorrow[/DATE]")
    assert 'title="2026-11-25T10:00:00+03:00">tomorrow</span>' in out


def test_like_dislike_rating_and_disk() -> None:
    out = bb("[LIKE] [dislike] [RATING=4] [DISK=15]")
    assert "b24-chat-vote--like" in out
    assert "b24-chat-vote--dislike" in out
    assert 'title="Rating - 4"' in out
    assert out.endswith("[File]")


def test_rating_outside_one_to_five_stays_literal() -> None:
    assert bb("[RATING=6]") == "[RATING=6]"


def test_me_and_loud_only_at_message_start() -> None:
    assert bb("/me waves") == "<i> waves</i>"
    assert bb("/loud hey") == '<span style="font-size: 20px"> hey</span>'
    assert bb("say /me") == "say /me"
    assert bb("/meow") == "/meow"


# ---------------------------------------------------------------------------------------------
# ATTACH
# ---------------------------------------------------------------------------------------------


def test_attach_bar_defaults_to_base_blue() -> None:
    out = attach({"MESSAGE": "hi"})
    assert out == (
        '<div class="b24-chat-attach"><div class="b24-chat-attach__bar" '
        'style="background-color: #17a3ea"></div><div class="b24-chat-attach__content">'
        '<div class="b24-chat-attach-message">hi</div></div></div>'
    )


def test_attach_color_sets_bar() -> None:
    assert 'style="background-color: #29619b"' in attach({"MESSAGE": "hi"}, COLOR="#29619B")


def test_transparent_attach_has_no_bar() -> None:
    assert "b24-chat-attach__bar" not in attach({"MESSAGE": "hi"}, COLOR="TRANSPARENT")


@pytest.mark.parametrize(
    ("token", "hex_color"),
    [("primary", "#2fc6f6"), ("secondary", "#a8adb4"), ("alert", "#ff5752"), ("base", "#17a3ea")],
)
def test_color_token_maps_to_palette(token: str, hex_color: str) -> None:
    assert f"background-color: {hex_color}" in attach({"MESSAGE": "x"}, COLOR_TOKEN=token)


def test_color_wins_over_color_token() -> None:
    out = attach({"MESSAGE": "x"}, COLOR="#123456", COLOR_TOKEN="alert")
    assert "#123456" in out
    assert "#ff5752" not in out


def test_invalid_attach_color_falls_back_to_default() -> None:
    assert "#17a3ea" in attach({"MESSAGE": "x"}, COLOR="red;display:none")


def test_message_block_accepts_text_object_and_bb_codes() -> None:
    out = attach({"MESSAGE": {"TEXT": "[b]a[/b]#BR#b", "AS_DESCRIPTION": "Y"}})
    assert '<div class="b24-chat-attach-message"><b>a</b><br>b</div>' in out


def test_link_block_with_url_name_and_desc() -> None:
    out = attach({"LINK": {"NAME": "Docs", "LINK": "https://example.com", "DESC": "[i]read[/i]"}})
    assert (
        f'<a class="b24-chat-attach-link__name" href="https://example.com" {LINK_ATTRS}>Docs</a>'
    ) in out
    assert '<div class="b24-chat-attach-link__desc"><i>read</i></div>' in out


def test_link_block_without_name_shows_url() -> None:
    assert ">https://example.com/x</a>" in attach({"LINK": [{"LINK": "https://example.com/x"}]})


def test_link_block_without_link_shows_dashed_label() -> None:
    out = attach({"LINK": {"NAME": "Chat", "CHAT_ID": 5}})
    assert '<span class="b24-chat-attach-link__label">Chat</span>' in out


def test_link_block_html_wins_over_desc_as_text_only() -> None:
    out = attach(
        {"LINK": {"LINK": "https://e.com", "HTML": "<b>bold</b><script>x</script>", "DESC": "d"}}
    )
    assert "b24-chat-attach-link__desc" in out
    assert ">d<" not in out
    assert "<b>bold" not in out


def test_link_block_preview_renders_image() -> None:
    out = attach(
        {
            "LINK": {
                "LINK": "https://e.com",
                "PREVIEW": "https://e.com/p.jpg",
                "WIDTH": 500,
                "HEIGHT": 100,
            }
        }
    )
    assert 'class="b24-chat-attach-link__image"' in out
    assert 'src="https://e.com/p.jpg"' in out
    assert 'width="250" height="50"' in out


def test_rich_link_renders_image_then_card_with_plain_desc() -> None:
    out = attach(
        {
            "RICH_LINK": [
                {
                    "NAME": "Site",
                    "LINK": "https://e.com",
                    "DESC": "Tools &amp; [b]more[/b]",
                    "PREVIEW": "https://e.com/p.png",
                }
            ]
        }
    )
    assert out.index("b24-chat-rich__image") < out.index("b24-chat-rich__card")
    assert f'<a class="b24-chat-rich__name" href="https://e.com" {LINK_ATTRS}>Site</a>' in out
    assert '<div class="b24-chat-rich__desc">Tools &amp; [b]more[/b]</div>' in out


def test_user_block_with_avatar_and_link() -> None:
    out = attach(
        {"USER": {"NAME": "Support", "AVATAR": "https://e.com/a.png", "LINK": "https://e.com"}}
    )
    assert '<img class="b24-chat-avatar__img" src="https://e.com/a.png" alt="">' in out
    assert (
        f'class="b24-chat-attach-user__name" href="https://e.com" {LINK_ATTRS}>Support</a>' in out
    )


@pytest.mark.parametrize("kind", ["USER", "CHAT", "BOT"])
def test_user_block_without_avatar_uses_attach_color_and_silhouette(kind: str) -> None:
    out = attach({"USER": [{"NAME": "X", "AVATAR_TYPE": kind}]}, COLOR="#abcdef")
    assert (
        f'<span class="b24-chat-avatar b24-chat-avatar--{kind.lower()}" '
        'style="background-color: #abcdef"></span>'
    ) in out
    assert '<span class="b24-chat-attach-user__name">X</span>' in out


def test_user_block_without_name_is_skipped() -> None:
    assert attach({"USER": {"NAME": "  "}}) == ""


def test_grid_block_stacks_name_over_value() -> None:
    out = attach({"GRID": [{"DISPLAY": "BLOCK", "NAME": "Status", "VALUE": "[b]Open[/b]"}]})
    assert (
        '<div class="b24-chat-grid"><div class="b24-chat-grid__item b24-chat-grid__item--block">'
        '<div class="b24-chat-grid__name">Status</div>'
        '<div class="b24-chat-grid__value"><b>Open</b></div></div></div>'
    ) in out


def test_grid_line_items_are_inline_cards_with_width() -> None:
    out = attach(
        {
            "GRID": [
                {"DISPLAY": "LINE", "NAME": "A", "VALUE": "1", "WIDTH": 120},
                {"DISPLAY": "CARD", "NAME": "B", "VALUE": "2"},
            ]
        }
    )
    assert out.count("b24-chat-grid__item--line") == 2
    assert 'class="b24-chat-grid__item b24-chat-grid__item--line" style="width: 120px"' in out


def test_grid_row_makes_one_table_per_item() -> None:
    out = attach(
        {
            "GRID": [
                {"DISPLAY": "ROW", "NAME": "Name", "VALUE": "Anna", "WIDTH": 100},
                {"DISPLAY": "COLUMN", "NAME": "Phone", "VALUE": "123"},
            ]
        }
    )
    assert out.count("<table") == 2
    assert (
        '<table class="b24-chat-grid__row"><tbody><tr>'
        '<td class="b24-chat-grid__name" style="width: 100px">Name</td>'
        '<td class="b24-chat-grid__value">Anna</td></tr></tbody></table>'
    ) in out


def test_grid_table_renders_like_row() -> None:
    assert "b24-chat-grid__row" in attach(
        {"GRID": [{"DISPLAY": "TABLE", "NAME": "a", "VALUE": "b"}]}
    )


def test_grid_row_with_empty_name_spans_both_cells() -> None:
    out = attach({"GRID": [{"DISPLAY": "ROW", "NAME": "", "VALUE": "only value"}]})
    assert '<td class="b24-chat-grid__value" colspan="2">only value</td>' in out


def test_grid_width_applies_only_with_value() -> None:
    out = attach({"GRID": [{"DISPLAY": "LINE", "NAME": "n", "VALUE": "", "WIDTH": 90}]})
    assert "width" not in out.replace("b24-chat-grid", "")


def test_grid_value_color_link_and_token() -> None:
    out = attach(
        {
            "GRID": [
                {"NAME": "a", "VALUE": "v", "COLOR": "#ff0000", "LINK": "https://e.com"},
                {"NAME": "b", "VALUE": "w", "COLOR_TOKEN": "alert"},
                {"NAME": "c", "VALUE": "x", "COLOR": "expression(alert(1))"},
            ]
        }
    )
    assert (
        '<div class="b24-chat-grid__value" style="color: #ff0000">'
        f'<a class="b24-chat-grid__link" href="https://e.com" {LINK_ATTRS}>v</a></div>'
    ) in out
    assert 'style="color: #ff5752">w</div>' in out
    assert '<div class="b24-chat-grid__value">x</div>' in out


def test_grid_item_without_name_and_value_is_dropped() -> None:
    assert attach({"GRID": [{"DISPLAY": "BLOCK", "NAME": "", "VALUE": ""}]}) == ""


def test_image_block_scales_wide_images_to_250px() -> None:
    out = attach(
        {
            "IMAGE": [
                {
                    "LINK": "https://e.com/a.png",
                    "PREVIEW": "https://e.com/a_s.png",
                    "WIDTH": 1000,
                    "HEIGHT": 638,
                    "NAME": "Shot",
                }
            ]
        }
    )
    assert (
        f'<a class="b24-chat-attach-image" href="https://e.com/a.png" {LINK_ATTRS}>'
        '<img class="b24-chat-attach-image__img" src="https://e.com/a_s.png" alt="Shot" '
        'title="Shot" width="250" height="160" loading="lazy"></a>'
    ) in out


def test_image_block_keeps_small_images_and_accepts_one_dict() -> None:
    out = attach({"IMAGE": {"LINK": "https://e.com/a.png", "WIDTH": 100, "HEIGHT": "50"}})
    assert 'src="https://e.com/a.png"' in out
    assert 'width="100" height="50"' in out


def test_image_block_without_valid_link_renders_nothing() -> None:
    assert attach({"IMAGE": [{"LINK": "javascript:alert(1)"}]}) == ""


def test_file_block_shows_icon_name_and_size() -> None:
    out = attach(
        {"FILE": [{"LINK": "https://e.com/guide.pdf", "NAME": "guide.pdf", "SIZE": 1500000}]}
    )
    assert 'class="b24-chat-file-icon b24-chat-file-icon--pdf"' in out
    assert '<span class="b24-chat-attach-file__name">guide.pdf</span>' in out
    assert '<span class="b24-chat-attach-file__size">1.4 MB</span>' in out
    assert 'title="guide.pdf"' in out


def test_file_block_name_falls_back_to_url() -> None:
    out = attach({"FILE": {"LINK": "https://e.com/files/report.xlsx?x=1"}})
    assert ">report.xlsx</span>" in out
    assert "b24-chat-file-icon--xls" in out


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0 B"),
        (900, "900 B"),
        (1024, "1 KB"),
        (1536, "1.5 KB"),
        (1500000, "1.4 MB"),
        (734003200, "700 MB"),
        (5 * 1024**3, "5 GB"),
        ("2048", "2 KB"),
        (-1, ""),
        ("x", ""),
        (None, ""),
    ],
)
def test_file_size_formatting(size: object, expected: str) -> None:
    assert render.format_file_size(size) == expected


def test_long_file_name_is_shortened_to_70_keeping_extension() -> None:
    name = "a" * 100 + ".docx"
    short = render.shorten_file_name(name)
    assert len(short) == 70
    assert short.endswith("….docx")
    assert render.shorten_file_name("short.pdf") == "short.pdf"


def test_delimiter_defaults_to_200px_in_attach_color() -> None:
    out = attach({"DELIMITER": {}}, COLOR="#123")
    assert (
        '<div class="b24-chat-attach-delimiter" style="width: 200px; background-color: #123"></div>'
    ) in out


def test_delimiter_size_and_own_color() -> None:
    out = attach({"DELIMITER": {"SIZE": 300, "COLOR": "#c6c6c6"}})
    assert 'style="width: 300px; background-color: #c6c6c6"' in out


def test_delimiter_in_transparent_attach_uses_css_default_color() -> None:
    out = attach({"DELIMITER": {"SIZE": 50}}, COLOR="transparent")
    assert 'style="width: 50px"' in out


def test_unknown_block_renders_nothing() -> None:
    assert attach({"HTML": "<b>x</b>"}, {"SOMETHING": [1, 2]}) == ""


def test_render_attach_of_none_is_empty() -> None:
    assert render.render_attach(None) == ""


def test_attach_short_form_list_of_blocks() -> None:
    out = str(render.render_attach([{"MESSAGE": "a"}, {"MESSAGE": "b"}]))
    assert out.count("b24-chat-attach-message") == 2
    assert out.count("b24-chat-attach__bar") == 1


def test_list_of_full_attaches_renders_each() -> None:
    out = str(
        render.render_attach([{"BLOCKS": [{"MESSAGE": "a"}]}, {"BLOCKS": [{"MESSAGE": "b"}]}])
    )
    assert out.count('<div class="b24-chat-attach">') == 2


def test_spec_example_attach_renders_every_block_in_order() -> None:
    out = attach(
        {"MESSAGE": "Release [b]2.4[/b] is out"},
        {"DELIMITER": {"SIZE": 200, "COLOR": "#c6c6c6"}},
        {
            "GRID": [
                {"DISPLAY": "LINE", "NAME": "Version", "VALUE": "2.4"},
                {"DISPLAY": "LINE", "NAME": "Date", "VALUE": "2026-11-25"},
            ]
        },
        {"LINK": {"NAME": "Changelog", "LINK": "https://example.com/changelog", "DESC": "What"}},
        {"IMAGE": [{"LINK": "https://example.com/a.png", "WIDTH": 1000, "HEIGHT": 638}]},
        {"FILE": [{"LINK": "https://example.com/guide.pdf", "NAME": "guide.pdf", "SIZE": 1500000}]},
        {"USER": {"NAME": "Support team", "AVATAR": "https://example.com/logo.png"}},
        COLOR="#29619b",
    )
    order = [
        "b24-chat-attach-message",
        "b24-chat-attach-delimiter",
        "b24-chat-grid__item--line",
        "b24-chat-attach-link",
        "b24-chat-attach-images",
        "b24-chat-attach-files",
        "b24-chat-attach-user",
    ]
    positions = [out.index(marker) for marker in order]
    assert positions == sorted(positions)


# ---------------------------------------------------------------------------------------------
# KEYBOARD
# ---------------------------------------------------------------------------------------------


def test_link_button_opens_in_new_tab() -> None:
    assert keyboard({"TEXT": "Open", "LINK": "https://example.com"}) == (
        '<div class="b24-chat-keyboard"><a class="b24-chat-button b24-chat-button--block" '
        f'href="https://example.com" {LINK_ATTRS}>Open</a></div>'
    )


def test_line_buttons_and_newline_separator() -> None:
    out = keyboard(
        {"TEXT": "A", "LINK": "https://e.com/a", "DISPLAY": "LINE"},
        {"TYPE": "NEWLINE"},
        {"TEXT": "B", "LINK": "https://e.com/b", "DISPLAY": "line"},
    )
    assert out.count("b24-chat-button--line") == 2
    assert out.index(">A<") < out.index("b24-chat-keyboard__newline") < out.index(">B<")


def test_block_is_the_default_display() -> None:
    assert "b24-chat-button--block" in keyboard({"TEXT": "A", "DISPLAY": "WEIRD"})


def test_button_width_and_colours_are_inline_after_validation() -> None:
    out = keyboard(
        {
            "TEXT": "A",
            "LINK": "https://e.com",
            "WIDTH": 300,
            "BG_COLOR": "#29619B",
            "TEXT_COLOR": "#fff",
        }
    )
    assert 'style="width: 300px; background-color: #29619b; color: #fff"' in out


def test_button_invalid_colours_and_width_are_ignored() -> None:
    out = keyboard({"TEXT": "A", "BG_COLOR": "red", "TEXT_COLOR": "#ffff", "WIDTH": "-5"})
    assert "style" not in out


def test_off_colours_are_not_drawn() -> None:
    # chat-rendering.md §5: OFF_BG_COLOR / OFF_TEXT_COLOR are not read by the web client
    button = {"TEXT": "A", "LINK": "/x", "DISABLED": "Y"}
    out = keyboard({**button, "OFF_BG_COLOR": "#000", "OFF_TEXT_COLOR": "#f00"})
    assert "style" not in out and "#000" not in out


def test_disabled_button_is_not_a_link() -> None:
    out = keyboard({"TEXT": "A", "LINK": "https://e.com", "DISABLED": "Y"})
    assert "<a" not in out
    assert 'class="b24-chat-button b24-chat-button--block b24-chat-button--disabled"' in out
    assert 'aria-disabled="true"' in out


def test_mobile_context_button_is_hidden_on_web() -> None:
    out = keyboard({"TEXT": "M", "LINK": "https://e.com", "CONTEXT": "MOBILE"})
    assert "b24-chat-button--mobile-only" in out
    css = css_path().read_text()
    assert re.search(r"\.b24-chat-button--mobile-only\s*\{\s*display:\s*none", css)


def test_button_without_text_is_dropped_and_empty_keyboard_renders_nothing() -> None:
    assert keyboard({"TEXT": "  ", "LINK": "https://e.com"}, {"TYPE": "NEWLINE"}) == ""
    assert render.render_keyboard(None) == ""


def test_button_with_unsafe_link_is_plain_text() -> None:
    out = keyboard({"TEXT": "A", "LINK": "javascript:alert(1)"})
    assert out == (
        '<div class="b24-chat-keyboard"><span class="b24-chat-button b24-chat-button--block">'
        "A</span></div>"
    )


def test_bare_list_of_buttons_is_accepted() -> None:
    assert ">A</a>" in str(render.render_keyboard([{"TEXT": "A", "LINK": "https://e.com"}]))


# ---------------------------------------------------------------------------------------------
# Whole message
# ---------------------------------------------------------------------------------------------


def test_message_bubble_holds_text_attach_and_time() -> None:
    sent = datetime(2026, 11, 25, 9, 34, tzinfo=UTC)
    out = str(
        render.render_message(
            message="Hi [b]there[/b]",
            attach={"BLOCKS": [{"MESSAGE": "card"}]},
            keyboard={"BUTTONS": [{"TEXT": "Go", "LINK": "https://e.com"}]},
            sent_at=sent,
            now_tz=timezone(timedelta(hours=3)),
        )
    )
    assert_safe_html(out)
    assert out.startswith(
        '<div class="b24-chat-message b24-chat-message--opponent">'
        '<div class="b24-chat-message__body">'
        '<div class="b24-chat-message__text">Hi <b>there</b></div>'
        '<div class="b24-chat-message__attach">'
    )
    assert (
        '<time class="b24-chat-message__time" datetime="2026-11-25T12:34:00+03:00">12:34</time>'
        in out
    )
    # keyboard sits outside (after) the bubble body
    body_end = out.index("</time></div></div>")
    assert out.index('<div class="b24-chat-message__keyboard">') > body_end


def test_self_message_uses_self_side_class() -> None:
    out = str(render.render_message(message="ok", self_side=True))
    assert 'class="b24-chat-message b24-chat-message--self"' in out
    assert "<time" not in out


def test_message_without_text_has_only_attach() -> None:
    out = str(render.render_message(message="", attach={"BLOCKS": [{"MESSAGE": "x"}]}))
    assert "b24-chat-message__text" not in out
    assert "b24-chat-message__attach" in out


def test_naive_sent_at_is_shown_as_is() -> None:
    out = str(render.render_message(message="a", sent_at=datetime(2026, 1, 2, 7, 5)))  # noqa: DTZ001
    assert ">07:05</time>" in out


# ---------------------------------------------------------------------------------------------
# Hostile input through every text-bearing field
# ---------------------------------------------------------------------------------------------

XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.cookie)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "java\nscript:alert(1)",
    "&#106;avascript:alert(1)",
    "&#x6A;avascript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    'https://e.com/" onmouseover="alert(1)',
    "https://e.com/' onmouseover='alert(1)",
    'https://e.com/a.png" onerror="alert(1)',
    "/\\evil.example",
    "//evil.example/a.png",
    "[url=javascript:alert(1)]x[/url]",
    '[url="onmouseover=alert(1)]x[/url]',
    '[url=https://e.com" onclick="x]y[/url]',
    "[url]javascript:alert(1)[/url]",
    "[img size=small]javascript:alert(1).png[/img]",
    '[img size=small]https://e.com/a.png"onerror=alert(1)//.png[/img]',
    '[icon=https://e.com/i.png title="><script>alert(1)</script>]',
    "[icon=javascript:alert(1) size=20]",
    "[color=#fff;background:url(javascript:alert(1))]x[/color]",
    '[color=#fff" onmouseover="alert(1)]x[/color]',
    "[size=20px;behavior:url(x)]x[/size]",
    '[size=20" onmouseover="x]y[/size]',
    "[user=1 onmouseover=alert(1)]x[/user]",
    '[put="><script>alert(1)</script>]x[/put]',
    '[send=/x" onclick="alert(1)]go[/send]',
    '[call=+1" onclick="x]c[/call]',
    '[timestamp=1" onclick="x format=SHORT_TIME_FORMAT]',
    "[DATE=2026-11-25T10:00:00+03:00]<img src=x onerror=alert(1)>[/DATE]",
    "[code]</div><script>alert(1)</script>[/code]",
    ">><script>alert(1)</script>",
    "-" * 54 + "\n<b onclick=x>n</b> [<i>]\n<script>x</script>\n" + "-" * 54,
    "<iframe src=javascript:alert(1)></iframe>",
    '<a href="javascript:alert(1)">x</a>',
    "<style>*{background:url(javascript:alert(1))}</style>",
    "\x00<script>\x01alert(1)\x00</script>",
    "<!-- comment --><![CDATA[x]]>",
    "expression(alert(1))",
    "#f00;background-image:url(javascript:alert(1))",
    "#BR#<svg/onload=alert(1)>",
]

P = "\u2063PAYLOAD\u2063"  # placeholder replaced by each hostile payload
_URL = "https://e.com/x"

# Every text-bearing field of ATTACH and KEYBOARD, with the payload placed into it.
ATTACH_TEMPLATES: dict[str, dict[str, Any]] = {
    "attach MESSAGE": {"BLOCKS": [{"MESSAGE": P}, {"MESSAGE": {"TEXT": P}}]},
    "attach COLOR": {
        "COLOR": P,
        "COLOR_TOKEN": P,
        "BLOCKS": [{"DELIMITER": {}}, {"USER": {"NAME": "n"}}],
    },
    "LINK NAME/DESC": {"BLOCKS": [{"LINK": {"NAME": P, "DESC": P, "LINK": _URL}}]},
    "LINK LINK/PREVIEW": {"BLOCKS": [{"LINK": [{"NAME": "n", "LINK": P, "PREVIEW": P}]}]},
    "LINK HTML": {"BLOCKS": [{"LINK": {"LINK": _URL, "HTML": P, "DESC": P}}]},
    "RICH_LINK": {"BLOCKS": [{"RICH_LINK": {"NAME": P, "DESC": P, "LINK": P, "PREVIEW": P}}]},
    "RICH_LINK HTML": {"BLOCKS": [{"RICH_LINK": {"NAME": "n", "LINK": _URL, "HTML": P}}]},
    "USER": {"BLOCKS": [{"USER": {"NAME": P, "AVATAR": P, "LINK": P, "AVATAR_TYPE": P}}]},
    "GRID BLOCK": {"BLOCKS": [{"GRID": [{"DISPLAY": "BLOCK", "NAME": P, "VALUE": P}]}]},
    "GRID LINE": {"BLOCKS": [{"GRID": [{"DISPLAY": "LINE", "NAME": P, "VALUE": P, "WIDTH": 9}]}]},
    "GRID ROW": {"BLOCKS": [{"GRID": [{"DISPLAY": "ROW", "NAME": P, "VALUE": P}]}]},
    "GRID LINK/COLOR": {
        "BLOCKS": [
            {"GRID": [{"DISPLAY": P, "NAME": "n", "VALUE": "v", "LINK": P, "COLOR": P, "WIDTH": P}]}
        ]
    },
    "IMAGE": {"BLOCKS": [{"IMAGE": [{"LINK": P, "PREVIEW": P, "NAME": P, "WIDTH": P}]}]},
    "IMAGE PREVIEW/NAME": {"BLOCKS": [{"IMAGE": {"LINK": _URL, "PREVIEW": P, "NAME": P}}]},
    "FILE": {"BLOCKS": [{"FILE": [{"LINK": P, "NAME": P, "SIZE": P}]}]},
    "FILE NAME/SIZE": {"BLOCKS": [{"FILE": {"LINK": _URL, "NAME": P, "SIZE": P}}]},
    "DELIMITER": {"BLOCKS": [{"DELIMITER": {"SIZE": P, "COLOR": P}}]},
}
KEYBOARD_TEMPLATES: dict[str, dict[str, Any]] = {
    "button TEXT/LINK": {"BUTTONS": [{"TEXT": P, "LINK": P, "DISPLAY": P, "CONTEXT": P}]},
    "button colours": {
        "BUTTONS": [{"TEXT": "t", "LINK": _URL, "BG_COLOR": P, "TEXT_COLOR": P, "WIDTH": P}]
    },
    "button TYPE/DISABLED": {"BUTTONS": [{"TEXT": P, "TYPE": P, "DISABLED": P}]},
}


def _fill(template: Any, payload: str) -> Any:
    if isinstance(template, dict):
        return {key: _fill(value, payload) for key, value in template.items()}
    if isinstance(template, list):
        return [_fill(value, payload) for value in template]
    return payload if template == P else template


def _render_field(field: str, payload: str) -> str:
    if field == "MESSAGE":
        return str(render.render_message(message=payload))
    if field == "url tags":
        return str(render.render_bbcode(f"[url={payload}]t[/url] [url]{payload}[/url]"))
    if field == "base_url":
        return str(render.render_bbcode("[url=/a]x[/url] [icon=/i.png]", base_url=payload))
    if field in ATTACH_TEMPLATES:
        return str(render.render_attach(_fill(ATTACH_TEMPLATES[field], payload)))
    return str(render.render_keyboard(_fill(KEYBOARD_TEMPLATES[field], payload)))


FIELDS = ["MESSAGE", "url tags", "base_url", *ATTACH_TEMPLATES, *KEYBOARD_TEMPLATES]


@pytest.mark.parametrize("field", FIELDS)
def test_hostile_input_never_escapes_its_field(field: str) -> None:
    # One test per field, looping over the payloads: a test per pair would cost seconds.
    for payload in XSS_PAYLOADS:
        try:
            assert_safe_html(_render_field(field, payload))
        except AssertionError as error:
            raise AssertionError(f"{field} with payload {payload!r}: {error}") from None


def test_payload_list_is_large_enough() -> None:
    assert len(XSS_PAYLOADS) >= 30


def test_quote_in_url_is_escaped_inside_the_attribute() -> None:
    out = bb("[url=https://e.com/?q='x']q[/url]")
    assert 'href="https://e.com/?q=&#x27;x&#x27;"' in out


def test_entity_encoded_javascript_is_not_decoded_into_a_link() -> None:
    assert "<a" not in bb("[url=&#106;avascript:alert(1)]x[/url]")


# ---------------------------------------------------------------------------------------------
# Property: random text never breaks the renderer or its output
# ---------------------------------------------------------------------------------------------

# fmt: off
FRAGMENTS = [
    "[b]", "[/b]", "[i]", "[/i]", "[u]", "[/u]", "[s]", "[/s]", "[size=12]", "[size=99pt]",
    "[/size]", "[color=#f00]", "[color=red]", "[/color]", "[url]", "[url=", "]", "[/url]",
    "https://e.com/a.png", "https://e.com/x", "/rel", "javascript:", "[img size=small]", "[/img]",
    "[icon=", " size=30", " title=", "[user=", "[USER=all]", "[/user]", "[chat=imol|", "[/chat]",
    "[context=chat1/2]", "[/context]", "[call=", "[/call]", "[put=", "[/put]", "[send]", "[/send]",
    "[code]", "[/code]", ">>", "-" * 54, "\n", "[br]", "#BR#", "    ", "\t", "<", ">", "&", "\"",
    "'", "&amp;", "&#106;", "[timestamp=1700000000 format=SHORT_TIME_FORMAT]", "[DATE=", "[/DATE]",
    "[LIKE]", "[RATING=3]", "[disk=1]", "/me ", "/loud ", "1", "x", " ", "[", "=", "/",
]
# fmt: on


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=40).map("".join))
def test_random_text_never_raises_and_stays_in_allow_list(text: str) -> None:
    assert_safe_html(str(render.render_bbcode(text, base_url="https://portal.example")))


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.text(max_size=20)
        | st.sampled_from(["#fff", "LINE", "ROW", "https://e.com/a.png", "Y", "transparent"]),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "BLOCKS",
                        "MESSAGE",
                        "LINK",
                        "RICH_LINK",
                        "USER",
                        "GRID",
                        "IMAGE",
                        "FILE",
                        "DELIMITER",
                        "NAME",
                        "VALUE",
                        "DESC",
                        "DISPLAY",
                        "COLOR",
                        "WIDTH",
                        "HEIGHT",
                        "PREVIEW",
                        "SIZE",
                        "AVATAR",
                        "TEXT",
                        "BUTTONS",
                        "TYPE",
                        "BG_COLOR",
                    ]
                ),
                children,
                max_size=5,
            )
        ),
        max_leaves=20,
    )
)
def test_random_structures_never_raise(value: Any) -> None:
    assert_safe_html(str(render.render_attach(value if isinstance(value, dict | list) else None)))
    assert_safe_html(str(render.render_keyboard(value if isinstance(value, dict | list) else None)))


# ---------------------------------------------------------------------------------------------
# The fields of spec §5.5 l.559-561 as the preview draws them: policy, server normalisation
# (`payload.parse_attach`, as the composer and the sandbox inbox use it), then the renderer
# ---------------------------------------------------------------------------------------------


def normalised(*blocks: dict[str, Any]) -> str:
    value = {"BLOCKS": list(blocks)}
    assert payload_rules.validate_attach(value) == []
    out = str(render.render_attach(payload_rules.parse_attach(value, 1)))
    assert_safe_html(out)
    return out


def test_links_to_users_chats_and_network_contacts_show_an_escaped_label() -> None:
    # chat-rendering.md §4.2 LINK: no LINK -> span.name
    out = normalised(
        {"LINK": {"USER_ID": 5, "NAME": "Ann <b>&amp;</b"}},
        {"LINK": {"NETWORK_ID": "n15", "NAME": "Partner"}},
        {"RICH_LINK": {"CHAT_ID": 7, "NAME": 'Team "chat"'}},
    )
    assert '<span class="b24-chat-attach-link__label">Ann &lt;b&gt;&amp;amp;&lt;/b</span>' in out
    assert '<span class="b24-chat-attach-link__label">Partner</span>' in out
    assert '<div class="b24-chat-rich__name">Team &quot;chat&quot;</div>' in out
    assert "href" not in out


def test_link_html_is_text_with_bb_codes_and_entities_stay_escaped() -> None:
    # chat-rendering.md §4.2 LINK: div.desc is the BB-code-parsed HTML (it wins over DESC)
    out = normalised(
        {"LINK": {"LINK": "/x", "HTML": "Due [b]Friday[/b] &lt;script&gt;alert(1)&lt;/script&gt;"}}
    )
    assert (
        '<div class="b24-chat-attach-link__desc">Due <b>Friday</b> '
        "&lt;script&gt;alert(1)&lt;/script&gt;</div>"
    ) in out


def test_rich_link_html_is_plain_text_with_entities_decoded() -> None:
    # chat-rendering.md §4.2 RICH_LINK: plain text, entities decoded, no BB parsing
    out = normalised(
        {"RICH_LINK": {"LINK": "/x", "NAME": "n", "HTML": "Tools &amp; [b]more[/b] &lt;i&gt;"}}
    )
    assert '<div class="b24-chat-rich__desc">Tools &amp; [b]more[/b] &lt;i&gt;</div>' in out


@pytest.mark.parametrize(
    ("user", "icon"),
    [
        ({"CHAT_ID": 4}, "chat"),  # the server sets AVATAR_TYPE CHAT
        ({"BOT_ID": 4}, "bot"),  # and BOT
        ({"NETWORK_ID": "n4"}, "user"),
        ({"BOT_ID": 4, "AVATAR_TYPE": "USER"}, "user"),  # an explicit type wins
    ],
)
def test_user_ids_pick_the_avatar_icon(user: dict[str, Any], icon: str) -> None:
    out = normalised({"USER": {"NAME": "X", **user}})
    assert f"b24-chat-avatar b24-chat-avatar--{icon}" in out
    assert "<a" not in out
