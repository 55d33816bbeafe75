"""The composer and history views, driven like htmx does, with Bitrix stubbed at the HTTP edge."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b24app.messaging import payload
from b24app.messaging.models import Delivery, Draft, LimitEntry, Line, Template
from b24app.portals.models import Portal
from tests.messaging.conftest import (
    CODE,
    OTHER_CODE,
    OTHER_DOMAIN,
    OTHER_MEMBER_ID,
    App,
    MessagingBitrix,
    compose_data,
)

pytestmark = pytest.mark.django_db


def text(response: Any) -> str:
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def errors_at(html: str, input_id: str) -> str:
    """The error list tied to one input (aria-describedby), or ""."""
    match = re.search(
        rf'<ul class="b24-field-error" id="{re.escape(input_id)}-error".*?</ul>', html, re.S
    )
    return match.group(0) if match else ""


def delivery_row(**fields: Any) -> Delivery:
    return Delivery.objects.create(**fields)


# --- access ----------------------------------------------------------------------------------

FRAME_URLS = [
    ("get", "compose", ()),
    ("post", "send", ()),
    ("post", "preview", ()),
    ("post", "attach", ()),
    ("post", "keyboard", ()),
    ("post", "recipient", ()),
    ("get", "recipient_search", ()),
    ("post", "lines", ()),
    ("post", "line_join", (1,)),
    ("post", "draft", ()),
    ("post", "reset", ()),
    ("post", "template_save", ()),
    ("post", "template_load", (1,)),
    ("post", "template_delete", (1,)),
    ("get", "history", ()),
    ("get", "delivery", (1,)),
]


@pytest.mark.parametrize(("method", "name", "args"), FRAME_URLS)
def test_every_composer_view_needs_the_frame_token(
    client: Client, portal: Portal, method: str, name: str, args: tuple[int, ...]
):
    response = getattr(client, method)(
        reverse(f"messaging:{name}", args=args), HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 403


def test_a_forged_frame_token_is_refused(client: Client, portal: Portal):
    response = client.get(reverse("messaging:compose"), HTTP_X_FRAME_TOKEN="forged.token.value")

    assert response.status_code == 403


def test_only_admins_can_add_or_rejoin_lines(app: App, line: Line, bitrix: MessagingBitrix):
    assert app.post("lines", {"line_code": OTHER_CODE}).status_code == 403
    assert app.post("line_join", args=(line.pk,)).status_code == 403
    assert not Line.objects.filter(code=OTHER_CODE).exists()


def test_another_portals_ids_answer_404(
    app: App, make_portal: Callable[..., Portal], admin_app: App
):
    other = make_portal(OTHER_MEMBER_ID, OTHER_DOMAIN)
    other_line = Line.objects.create(portal=other, code=CODE, join_status="joined")
    template = Template.objects.create(portal=other, name="theirs", data={"message": "x"})
    delivery = delivery_row(portal=other, line=other_line, user_id=5, message="secret")

    assert app.post("template_load", args=(template.pk,)).status_code == 404
    assert app.post("template_delete", args=(template.pk,)).status_code == 404
    assert app.get("delivery", args=(delivery.pk,)).status_code == 404
    assert admin_app.post("line_join", args=(other_line.pk,)).status_code == 404
    assert Template.objects.filter(pk=template.pk).exists()


def test_another_portals_line_cannot_be_used_to_send(
    app: App, make_portal: Callable[..., Portal], bitrix: MessagingBitrix
):
    other = make_portal(OTHER_MEMBER_ID, OTHER_DOMAIN)
    other_line = Line.objects.create(portal=other, code=CODE, join_status="joined")

    html = text(app.post("send", compose_data(other_line), target="composer"))

    assert "Choose one of this portal" in errors_at(html, "id_line")
    assert bitrix.sent == [] and not Delivery.objects.exists()


def test_history_lists_only_this_portals_deliveries(
    app: App, line: Line, make_portal: Callable[..., Portal]
):
    other = make_portal(OTHER_MEMBER_ID, OTHER_DOMAIN)
    other_line = Line.objects.create(portal=other, code=CODE)
    delivery_row(portal=line.portal, line=line, user_id=5, message="ours", recipient_name="Mine")
    delivery_row(portal=other, line=other_line, user_id=6, message="theirs", recipient_name="Other")

    html = text(app.get("history"))

    assert "Mine" in html and "Other" not in html and "theirs" not in html


# --- the page --------------------------------------------------------------------------------


def test_the_app_landing_page_loads_the_composer_into_the_frame(client: Client, app: App):
    response = client.get(reverse("portals:home"), HTTP_X_FRAME_TOKEN=app.token)

    html = text(response)
    assert f'hx-get="{reverse("messaging:compose")}"' in html
    assert 'hx-trigger="load"' in html and "js/composer.js" in html


def test_composer_for_htmx_is_the_app_page_partial(app: App, line: Line):
    html = text(app.get("compose"))

    assert html.lstrip().startswith('<div id="app-page"')
    assert "<html" not in html
    assert 'id="composer"' in html and 'id="attach-builder"' in html and 'id="preview"' in html


def test_composer_as_a_full_page_when_posted_with_the_token_field(client: Client, app: App):
    response = client.post(reverse("messaging:compose"), {"frame_token": app.token})

    html = text(response)
    assert "<!doctype html>" in html and 'id="composer"' in html
    assert "frame-ancestors https://acme.bitrix24.com" in response["Content-Security-Policy"]


def test_the_only_joined_line_is_preselected(app: App, line: Line):
    Line.objects.create(portal=line.portal, code=OTHER_CODE, join_status="not_found")

    html = text(app.get("compose"))

    assert f'<option value="{line.pk}" selected>' in html


def test_no_inline_scripts_or_event_handlers(app: App, line: Line):
    html = text(app.post("send", compose_data(line, message=""), target="composer"))

    assert "<script" not in html
    assert not re.search(r"\son[a-z]+=", html)


# --- preview ---------------------------------------------------------------------------------


def test_preview_draws_the_message_like_the_chat_with_attach_and_keyboard(app: App, line: Line):
    html = text(app.post("preview", compose_data(line), target="preview"))

    assert 'id="preview"' not in html  # only the content: the element with the triggers stays
    assert "<b>there</b>" in html
    assert "b24-chat-attach" in html and "https://example.com/changelog" in html
    assert "b24-chat-button" in html


def test_preview_shows_live_size_meters_against_the_policy_cap(app: App, line: Line):
    attach = {"BLOCKS": [{"MESSAGE": "x" * 12_000}]}
    normalised = payload.parse_attach(attach, 1_700_000_000)
    size = payload.attach_size(normalised, "bytes")
    data = compose_data(line, **{"attach-0-kind": "MESSAGE", "attach-0-text": "x" * 12_000})

    html = text(app.post("preview", data, target="preview"))

    assert f"ATTACH {size / 1000:.1f} of 30.0 KB" in html
    assert "KEYBOARD 0." in html and "of 30.0 KB" in html


def test_preview_marks_an_oversize_attachment(app: App, line: Line):
    data = compose_data(line, **{"attach-0-kind": "MESSAGE", "attach-0-text": "я" * 6000})

    html = text(app.post("preview", data, target="preview"))

    assert 'data-meter="ATTACH" data-state="over"' in html
    assert "too large" in html


def test_preview_can_show_the_mobile_width(app: App, line: Line):
    html = text(app.post("preview", compose_data(line, preview_width="mobile"), target="preview"))

    assert "b24-chat--mobile" in html and 'data-preview-width="mobile"' in html


def test_preview_lists_problems_with_where_they_are(app: App, line: Line):
    data = compose_data(line, **{"kb-0-link": "ftp://nope"})

    html = text(app.post("preview", data, target="preview"))

    assert "Keyboard · button 1 · Link" in html


def test_preview_keeps_drawing_while_a_number_is_half_typed(app: App, line: Line):
    data = compose_data(line, **{"kb-0-width": "12x"})

    html = text(app.post("preview", data, target="preview"))

    assert "Hello <b>there</b>" in html and "b24-chat-attach" in html
    assert "not filled in correctly" in html


# --- builder actions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["MESSAGE", "LINK", "RICH_LINK", "USER", "GRID", "IMAGE", "FILE", "DELIMITER"]
)
def test_every_block_type_can_be_added(app: App, kind: str):
    response = app.post("attach", {"add_block": kind}, target="attach-builder")

    html = text(response)
    assert html.lstrip().startswith('<section id="attach-builder"')
    assert f'name="attach-0-kind" value="{kind}"' in html
    assert "builder-changed" in response["HX-Trigger-After-Settle"]


def test_grid_items_can_be_added_removed_and_reordered(app: App):
    data = {
        "attach-0-kind": "GRID",
        "attach-0-item-0-name": "Version",
        "attach-0-item-0-value": "2.4",
        "attach-0-item-0-display": "LINE",
    }
    html = text(app.post("attach", {**data, "add_item_0": ""}, target="attach-builder"))
    assert 'name="attach-0-item-1-name"' in html

    data.update({"attach-0-item-1-name": "Date", "attach-0-item-1-value": "today"})
    html = text(app.post("attach", {**data, "item_up_0_1": ""}, target="attach-builder"))
    assert re.search(r'name="attach-0-item-0-name" value="Date"', html)

    html = text(app.post("attach", {**data, "remove_item_0_0": ""}, target="attach-builder"))
    assert re.search(r'name="attach-0-item-0-name" value="Date"', html)
    assert "attach-0-item-1-name" not in html


def test_blocks_move_duplicate_and_remove_keeping_what_was_typed(app: App):
    data = {
        "attach-0-kind": "MESSAGE",
        "attach-0-text": "first",
        "attach-1-kind": "LINK",
        "attach-1-link": "not a link yet",
        "attach-1-width": "12x",
    }
    html = text(app.post("attach", {**data, "move_up_1": ""}, target="attach-builder"))
    assert html.index('value="LINK"') < html.index('value="MESSAGE"')
    assert 'value="not a link yet"' in html and 'value="12x"' in html

    html = text(app.post("attach", {**data, "duplicate_block_0": ""}, target="attach-builder"))
    assert html.count("first</textarea>") == 2

    html = text(app.post("attach", {**data, "remove_block_0": ""}, target="attach-builder"))
    assert "first" not in html and 'name="attach-0-kind" value="LINK"' in html


def test_attachment_colour_and_clear_all(app: App):
    data = {"attach-color": "transparent", "attach-0-kind": "DELIMITER", "attach-0-size": "150"}

    html = text(app.post("attach", {**data, "add_block": "MESSAGE"}, target="attach-builder"))
    assert 'value="transparent"' in html and 'name="attach-1-kind"' in html

    html = text(app.post("attach", {**data, "clear_attach": ""}, target="attach-builder"))
    assert 'name="attach-0-kind"' not in html


def test_keyboard_rows_add_move_and_remove(app: App):
    data = {"kb-0-kind": "button", "kb-0-text": "Site", "kb-0-link": "https://example.com"}

    html = text(app.post("keyboard", {**data, "add_newline": ""}, target="keyboard-builder"))
    assert html.lstrip().startswith('<section id="keyboard-builder"')
    assert 'name="kb-1-kind" value="newline"' in html

    data.update({"kb-1-kind": "newline", "kb-2-kind": "button", "kb-2-text": "Docs"})
    html = text(app.post("keyboard", {**data, "button_up_2": ""}, target="keyboard-builder"))
    assert 'name="kb-1-text" value="Docs"' in html

    html = text(app.post("keyboard", {**data, "remove_button_0": ""}, target="keyboard-builder"))
    assert 'value="Site"' not in html and 'name="kb-0-kind" value="newline"' in html

    html = text(app.post("keyboard", {**data, "add_button": ""}, target="keyboard-builder"))
    assert 'name="kb-3-kind" value="button"' in html


def test_the_builder_refuses_more_than_its_cap_of_blocks(app: App):
    data = {f"attach-{i}-kind": "DELIMITER" for i in range(30)}

    html = text(app.post("attach", {**data, "add_block": "MESSAGE"}, target="attach-builder"))

    assert "at most 30 blocks" in html and 'name="attach-30-kind"' not in html


# --- import and export -----------------------------------------------------------------------

DOCS_ATTACH = {
    "ID": 1,
    "COLOR_TOKEN": "secondary",
    "COLOR": "#29619b",
    "BLOCKS": [
        {"MESSAGE": "Release [b]2.4[/b] is out"},
        {"DELIMITER": {"SIZE": 200, "COLOR": "#c6c6c6"}},
        {"GRID": [{"DISPLAY": "LINE", "NAME": "Version", "VALUE": "2.4"}]},
        {"LINK": {"NAME": "Changelog", "LINK": "https://example.com/changelog"}},
        {"IMAGE": [{"LINK": "https://example.com/a.png", "WIDTH": 1000, "HEIGHT": 638}]},
        {"FILE": [{"LINK": "https://example.com/guide.pdf", "NAME": "guide.pdf", "SIZE": 1500}]},
        {"USER": {"NAME": "Support team", "AVATAR": "https://example.com/logo.png"}},
    ],
}


def test_a_docs_example_opens_in_the_attachment_builder(app: App):
    html = text(app.post("attach", {"attach_json": json.dumps(DOCS_ATTACH), "import_attach": ""}))

    kinds = re.findall(r'name="attach-\d+-kind" value="([A-Z_]+)"', html)
    assert kinds == ["MESSAGE", "DELIMITER", "GRID", "LINK", "IMAGE", "FILE", "USER"]
    assert "These parts were left out:" in html
    assert "<code>ATTACH.ID</code>: Bitrix replaces the ID with its own" in html
    assert 'value="#29619b"' in html and "2.4</textarea>" in html


def test_a_clean_attachment_round_trips_through_import_and_export(app: App):
    clean = {key: value for key, value in DOCS_ATTACH.items() if key != "ID"}

    html = text(app.post("attach", {"attach_json": json.dumps(clean), "import_attach": ""}))

    assert "Attachment opened in the builder." in html
    exported = re.search(r'<textarea name="attach_json"[^>]*>(.*?)</textarea>', html, re.S)
    assert exported is not None
    assert json.loads(unescape(exported.group(1))) == payload.Attach.from_bitrix(clean).to_bitrix()


def test_a_keyboard_example_opens_in_the_keyboard_builder(app: App):
    keyboard = {
        "BUTTONS": [
            {
                "TEXT": "Open site",
                "LINK": "https://example.com",
                "BG_COLOR": "#29619b",
                "DISPLAY": "LINE",
            },
            {"TYPE": "NEWLINE"},
            {"TEXT": "Docs", "LINK": "https://example.com/docs", "DISABLED": "Y"},
        ]
    }

    html = text(
        app.post("keyboard", {"keyboard_json": json.dumps(keyboard), "import_keyboard": ""})
    )

    assert "Keyboard opened in the builder." in html
    assert 'name="kb-1-kind" value="newline"' in html
    assert re.search(r'name="kb-2-disabled"[^>]*checked', html)


def test_invalid_json_is_a_clear_inline_error_and_the_text_is_kept(app: App):
    html = text(app.post("attach", {"attach_json": '{"BLOCKS": [}', "import_attach": ""}))

    assert "This is not valid JSON" in html and "line 1, column 13" in html
    assert "{&quot;BLOCKS&quot;: [}</textarea>" in html


def test_an_import_with_a_bad_link_opens_with_the_error_at_that_field(app: App):
    bad = {"BLOCKS": [{"MESSAGE": "hi"}, {"LINK": {"LINK": "javascript:alert(1)", "NAME": "x"}}]}

    html = text(app.post("attach", {"attach_json": json.dumps(bad), "import_attach": ""}))

    assert "A link must start with" in errors_at(html, "id_attach-1-link")


def test_a_keyboard_given_as_a_string_is_refused(app: App):
    html = text(
        app.post("keyboard", {"keyboard_json": '"[{\\"TEXT\\": \\"x\\"}]"', "import_keyboard": ""})
    )

    assert "does not decode a string" in html


# Docs-style JSON using every target and description field of spec §5.5 l.559-561.
DOCS_ATTACH_TARGETS = {
    "BLOCKS": [
        {"LINK": {"USER_ID": 1, "NAME": "John Smith", "HTML": "Your account manager"}},
        {"LINK": {"NETWORK_ID": "n25", "NAME": "Partner", "CHAT_ID": 4}},
        {"RICH_LINK": {"CHAT_ID": 12, "NAME": "Support chat", "HTML": "Open the chat"}},
        {"USER": {"NAME": "Helper bot", "BOT_ID": 12, "AVATAR_TYPE": "BOT"}},
        {"USER": {"NAME": "Support", "CHAT_ID": 40}},
        {"USER": {"NAME": "Partner", "NETWORK_ID": "n7"}},
    ]
}


def test_docs_json_with_ids_and_html_opens_whole_in_the_builder(app: App):
    clean = copy.deepcopy(DOCS_ATTACH_TARGETS)
    del clean["BLOCKS"][1]["LINK"]["CHAT_ID"]  # the server keeps one id: see the next test

    html = text(app.post("attach", {"attach_json": json.dumps(clean), "import_attach": ""}))

    assert "Attachment opened in the builder." in html
    assert re.search(r'name="attach-0-user_id"[^>]*value="1"', html)
    assert "Your account manager</textarea>" in html
    assert re.search(r'name="attach-1-network_id"[^>]*value="n25"', html)
    assert re.search(r'name="attach-2-chat_id"[^>]*value="12"', html)
    assert re.search(r'name="attach-3-bot_id"[^>]*value="12"', html)
    assert re.search(r'name="attach-4-chat_id"[^>]*value="40"', html)
    assert re.search(r'name="attach-5-network_id"[^>]*value="n7"', html)
    exported = re.search(r'<textarea name="attach_json"[^>]*>(.*?)</textarea>', html, re.S)
    assert exported is not None
    assert json.loads(unescape(exported.group(1))) == clean


def test_an_import_says_why_each_part_was_left_out(app: App):
    refused = {
        "DESCRIPTION": "Summary for notifications",
        "BLOCKS": [
            {"MESSAGE": {"TEXT": "Release notes", "AS_DESCRIPTION": "Y"}},
            {"RICH_LINK": {"LINK": "https://e.com", "PREVIEW": "/p.png", "WIDTH": 600}},
            *DOCS_ATTACH_TARGETS["BLOCKS"][:2],
        ],
    }

    html = text(app.post("attach", {"attach_json": json.dumps(refused), "import_attach": ""}))

    assert "would ignore" not in html
    assert "These parts were left out:" in html
    assert (
        "<code>ATTACH.DESCRIPTION</code>: Bitrix reads a top-level DESCRIPTION but does not use it"
    ) in html
    assert "<code>ATTACH.BLOCKS[0].MESSAGE</code>: Older Bitrix versions drop a MESSAGE" in html
    assert "<code>ATTACH.BLOCKS[1].RICH_LINK.WIDTH</code>: Bitrix keeps WIDTH and HEIGHT" in html
    # the text of the refused MESSAGE form is kept as a plain block; the rest opens as usual
    assert "Release notes</textarea>" in html
    assert re.search(r'name="attach-2-user_id"[^>]*value="1"', html)
    # loaded but refused: shown at its input, where it can be fixed
    assert "keeps only the first" in errors_at(html, "id_attach-3-chat_id")


def test_a_keyboard_import_keeps_off_colours_and_says_why_colors_are_left_out(app: App):
    keyboard = {
        "COLORS": {"BG_COLOR": "#29619b"},
        "BUTTONS": [
            {"TEXT": "Open", "LINK": "https://e.com", "OFF_BG_COLOR": "#eee"},
            {"TEXT": "Docs", "LINK": "/docs", "OFF_TEXT_COLOR": "#999", "FOO": 1},
        ],
    }

    html = text(
        app.post("keyboard", {"keyboard_json": json.dumps(keyboard), "import_keyboard": ""})
    )

    assert re.search(r'name="kb-0-off_bg_color"[^>]*value="#eee"', html)
    assert re.search(r'name="kb-1-off_text_color"[^>]*value="#999"', html)
    assert "<code>KEYBOARD.COLORS</code>: Give each button its own colours" in html
    assert "<code>KEYBOARD.BUTTONS[1].FOO</code>: Only link buttons are allowed" in html
    assert "would ignore" not in html


def test_a_link_to_a_user_is_sent_and_previewed_without_a_url(
    app: App, line: Line, bitrix: MessagingBitrix
):
    data = compose_data(
        line,
        **{"attach-0-link": "", "attach-0-name": "Ann <Manager>", "attach-0-user_id": "5"},
    )

    preview = text(app.post("preview", data, target="preview"))
    assert '<span class="b24-chat-attach-link__label">Ann &lt;Manager&gt;</span>' in preview

    text(app.post("send", data, target="composer"))
    [sent] = bitrix.sent
    assert sent["ATTACH"] == {"BLOCKS": [{"LINK": {"USER_ID": 5, "NAME": "Ann <Manager>"}}]}


@pytest.mark.parametrize(
    ("fields", "input_id", "words"),
    [
        ({"attach-0-network_id": "n015"}, "id_attach-0-network_id", "one letter followed by"),
        ({"attach-0-html": "<b>x</b>"}, "id_attach-0-html", "Leave out HTML tags"),
        (
            {"attach-0-html": "x", "attach-0-desc": "y"},
            "id_attach-0-desc",
            "Use DESC or HTML, not both",
        ),
        (
            {"attach-0-link": "", "attach-0-user_id": "5", "attach-0-name": ""},
            "id_attach-0-name",
            "need a NAME",
        ),
        ({"attach-0-link": ""}, "id_attach-0-link", "Add a LINK, or a USER_ID"),
        ({"kb-0-off_bg_color": "grey"}, "id_kb-0-off_bg_color", "#RGB or #RRGGBB"),
    ],
)
def test_new_fields_are_refused_at_their_input(
    app: App, line: Line, bitrix: MessagingBitrix, fields: dict[str, str], input_id: str, words: str
):
    html = text(app.post("send", compose_data(line, **fields)))

    assert words in errors_at(html, input_id)
    assert bitrix.sent == []


# --- recipient -------------------------------------------------------------------------------


def test_searching_by_name_lists_active_users(app: App, bitrix: MessagingBitrix):
    html = text(app.get("recipient_search", {"recipient_q": "iv"}, target="recipient-results"))

    assert html.lstrip().startswith('<div id="recipient-results"')
    assert "Ivan Manager" in html and 'value="7"' in html
    assert "Ivo" not in html


def test_search_results_carry_names_safely(app: App, bitrix: MessagingBitrix):
    html = text(app.get("recipient_search", {"recipient_q": "irina"}))

    assert "O&#x27;Brien &quot;Ira&quot;" in html
    assert 'hx-vals=\'{"pick_name": "Irina O\\u0027Brien \\u0022Ira\\u0022"}\'' in html


def test_a_failed_search_says_so_inline(app: App, bitrix: MessagingBitrix):
    bitrix.search_fails = True

    html = text(app.get("recipient_search", {"recipient_q": "ivan"}))

    assert "did not answer the search" in html


def test_a_one_letter_search_does_not_call_bitrix(app: App, bitrix: MessagingBitrix):
    html = text(app.get("recipient_search", {"recipient_q": "i"}))

    assert "Ivan" not in html
    assert not [c for c in bitrix.fake.rsps.calls if "user.search" in c.request.url]


def test_picking_a_user_sets_the_recipient_and_shows_the_ledger(app: App, line: Line):
    data = {"line": str(line.pk), "pick_user_id": "7", "pick_name": "Ivan Manager"}

    html = text(app.post("recipient", data, target="recipient"))

    assert html.lstrip().startswith('<div id="recipient"')
    assert 'name="user_id" value="7"' in html and "Ivan Manager" in html
    assert 'data-ledger="free"' in html


def test_clearing_the_recipient(app: App, line: Line):
    data = {"line": str(line.pk), "user_id": "7", "recipient_name": "Ivan", "clear_recipient": ""}

    html = text(app.post("recipient", data))

    assert "Nobody chosen yet" in html and 'value="7"' not in html


def test_the_ledger_says_when_a_recipient_can_be_messaged_again(app: App, line: Line):
    sent = timezone.now() - timedelta(days=2)
    LimitEntry.objects.create(portal=line.portal, line_code=line.code, user_id=7, sent_at=sent)

    html = text(app.post("recipient", {"line": str(line.pk), "user_id": "7"}))

    assert 'data-ledger="blocked"' in html
    assert f'datetime="{(sent + timedelta(days=7)).isoformat()}"' in html


def test_the_ledger_is_off_on_nfr_portals(app: App, line: Line):
    Portal.objects.filter(pk=line.portal.pk).update(nfr=True)
    LimitEntry.objects.create(
        portal=line.portal, line_code=line.code, user_id=7, sent_at=timezone.now()
    )

    html = text(app.post("recipient", {"line": str(line.pk), "user_id": "7"}))

    assert 'data-ledger="exempt"' in html and "NFR" in html


# --- lines -----------------------------------------------------------------------------------


def test_an_admin_adds_a_line_by_code_and_it_is_joined(admin_app: App, bitrix: MessagingBitrix):
    html = text(
        admin_app.post("lines", {"line_code": OTHER_CODE, "line_name": "Sales"}, target="lines")
    )

    line = Line.objects.get(code=OTHER_CODE)
    assert line.join_status == "joined" and line.bot_id
    assert html.lstrip().startswith('<div id="lines"')
    assert 'data-join-status="joined"' in html and f'<option value="{line.pk}" selected>' in html


@pytest.mark.parametrize(("state", "shown"), [("NOT_FOUND", "not_found"), ("INACTIVE", "inactive")])
def test_a_line_that_cannot_be_joined_shows_why(
    admin_app: App, bitrix: MessagingBitrix, state: str, shown: str
):
    bitrix.joinable[OTHER_CODE] = state

    html = text(admin_app.post("lines", {"line_code": OTHER_CODE}))

    assert f'data-join-status="{shown}"' in html
    assert Line.objects.get(code=OTHER_CODE).join_status == shown


def test_a_malformed_line_code_is_an_inline_error(admin_app: App, bitrix: MessagingBitrix):
    html = text(admin_app.post("lines", {"line_code": "short"}))

    assert "exactly 32 characters" in html and not Line.objects.exists()


def test_an_admin_can_join_a_line_again(admin_app: App, line: Line, bitrix: MessagingBitrix):
    Line.objects.filter(pk=line.pk).update(join_status="not_found")

    html = text(admin_app.post("line_join", args=(line.pk,)))

    assert 'data-join-status="joined"' in html
    assert Line.objects.get(pk=line.pk).join_status == "joined"


# --- sending ---------------------------------------------------------------------------------


def test_a_valid_message_is_sent_with_a_toast_and_a_cleared_form(
    app: App, line: Line, bitrix: MessagingBitrix
):
    Draft.objects.create(portal=line.portal, user_id=7, data={"message": "old"})

    response = app.post("send", compose_data(line), target="composer")

    html = text(response)
    assert html.lstrip().startswith('<form id="composer"')
    assert "Message sent to Irina." in html and 'class="b24-toast' in html
    assert "Hello [b]there[/b]" not in html and 'name="attach-0-kind"' not in html
    assert f'<option value="{line.pk}" selected>' in html
    [sent] = bitrix.sent
    assert sent["ATTACH"] == {
        "BLOCKS": [{"LINK": {"LINK": "https://example.com/changelog", "NAME": "Changelog"}}]
    }
    assert sent["KEYBOARD"] == {
        "BUTTONS": [{"TEXT": "Open", "LINK": "https://example.com", "DISPLAY": "LINE"}]
    }
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.author_user_id, delivery.recipient_name) == (
        "sent",
        7,
        "Irina",
    )
    assert not Draft.objects.exists()


def test_a_missing_line_and_recipient_are_shown_at_their_fields(app: App, line: Line):
    html = text(app.post("send", compose_data(None, user_id="", recipient_name="")))

    assert "Choose the open line" in errors_at(html, "id_line")
    assert "Choose who gets the message" in html
    assert not Delivery.objects.exists()


def test_an_empty_message_is_refused_at_the_message(app: App, line: Line, bitrix: MessagingBitrix):
    html = text(app.post("send", compose_data(line, message="   ")))

    assert "MESSAGE_EMPTY" in errors_at(html, "id_message")
    assert bitrix.sent == []


def test_a_bad_button_link_is_refused_at_that_button(app: App, line: Line, bitrix: MessagingBitrix):
    data = compose_data(
        line,
        **{
            "kb-1-kind": "newline",
            "kb-2-kind": "button",
            "kb-2-text": "x",
            "kb-2-link": "mailto:a@b.c",
        },
    )

    html = text(app.post("send", data))

    assert "KEYBOARD_ERROR" in errors_at(html, "id_kb-2-link")
    assert errors_at(html, "id_kb-0-link") == ""
    assert 'value="mailto:a@b.c"' in html
    assert bitrix.sent == []


def test_an_empty_grid_cell_is_refused_at_that_cell(app: App, line: Line, bitrix: MessagingBitrix):
    data = compose_data(
        line,
        **{
            "attach-1-kind": "GRID",
            "attach-1-item-0-name": "Version",
            "attach-1-item-0-value": "",
        },
    )

    html = text(app.post("send", data))

    assert "ATTACH_ERROR" in errors_at(html, "id_attach-1-item-0-value")
    assert bitrix.sent == []


def test_an_oversize_attachment_is_refused_at_the_attachment_builder(
    app: App, line: Line, bitrix: MessagingBitrix
):
    data = compose_data(line, **{"attach-1-kind": "MESSAGE", "attach-1-text": "ж" * 6000})

    html = text(app.post("send", data))

    builder = html[html.index('id="attach-builder"') : html.index('id="keyboard-builder"')]
    assert 'data-code="ATTACH_OVERSIZE"' in builder
    assert bitrix.sent == []


def test_a_recipient_inside_the_weekly_limit_is_refused_at_the_recipient_with_the_date(
    app: App, line: Line, bitrix: MessagingBitrix
):
    sent = timezone.now() - timedelta(days=1)
    LimitEntry.objects.create(portal=line.portal, line_code=line.code, user_id=9, sent_at=sent)

    html = text(app.post("send", compose_data(line)))

    recipient = html[html.index('id="recipient"') : html.index('id="message-title"')]
    assert 'data-code="USER_MESSAGE_LIMIT"' in recipient
    assert f'datetime="{(sent + timedelta(days=7)).isoformat()}"' in recipient
    assert bitrix.sent == [] and 'name="attach-0-kind"' in html


def test_a_weekly_limit_only_bitrix_knew_is_shown_and_remembered(
    app: App, line: Line, bitrix: MessagingBitrix
):
    bitrix.ledger.add((CODE, 9))

    html = text(app.post("send", compose_data(line)))

    assert 'data-code="USER_MESSAGE_LIMIT"' in html
    entry = LimitEntry.objects.get(user_id=9)
    assert entry.source == "server"
    assert Delivery.objects.get().status == "limited"
    assert "Hello [b]there[/b]" in html


def test_a_line_not_joined_is_refused_at_the_line(app: App, line: Line, bitrix: MessagingBitrix):
    bitrix.joined.clear()

    html = text(app.post("send", compose_data(line)))

    assert "NOT_FOUND" in errors_at(html, "id_line")
    assert Delivery.objects.get().status == "rejected"


def test_a_keyboard_bitrix_refuses_is_shown_at_the_keyboard(
    app: App, line: Line, bitrix: MessagingBitrix
):
    bitrix.next_send = ("error", "KEYBOARD_ERROR")

    html = text(app.post("send", compose_data(line)))

    builder = html[html.index('id="keyboard-builder"') : html.index('id="templates"')]
    assert 'data-code="KEYBOARD_ERROR"' in builder


def test_an_unknown_recipient_is_shown_at_the_recipient(
    app: App, line: Line, bitrix: MessagingBitrix
):
    bitrix.next_send = ("error", "WRONG_REQUEST")

    html = text(app.post("send", compose_data(line)))

    recipient = html[html.index('id="recipient"') : html.index('id="message-title"')]
    assert "WRONG_REQUEST" in recipient


@pytest.mark.parametrize("failure", ["timeout", "500"])
def test_an_unknown_outcome_warns_it_may_have_been_delivered_and_blocks_a_blind_retry(
    app: App, line: Line, bitrix: MessagingBitrix, failure: str
):
    bitrix.next_send = failure

    html = text(app.post("send", compose_data(line)))

    delivery = Delivery.objects.get()
    assert delivery.status == "unknown"
    assert "may have been delivered" in html
    assert reverse("messaging:delivery", args=(delivery.pk,)) in html
    assert f'name="unknown_delivery" value="{delivery.pk}"' in html

    again = compose_data(line, unknown_delivery=str(delivery.pk))
    html = text(app.post("send", again))
    assert "may have been delivered" in html and bitrix.sent == []
    assert Delivery.objects.count() == 1

    html = text(app.post("send", {**again, "confirm_resend": "on"}))
    assert "Message sent to Irina." in html and len(bitrix.sent) == 1


def test_a_rate_limited_send_is_queued_and_says_it_will_go_soon(
    app: App, line: Line, bitrix: MessagingBitrix, django_capture_on_commit_callbacks: Any
):
    bitrix.next_send = ("retry", "QUERY_LIMIT_EXCEEDED")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        html = text(app.post("send", compose_data(line)))

    assert "will be sent shortly" in html
    assert Delivery.objects.get().status == "queued"
    assert len(callbacks) == 1


def test_a_test_goes_to_the_author_and_keeps_the_form(
    app: App, line: Line, bitrix: MessagingBitrix
):
    html = text(
        app.post("send", {**compose_data(line, user_id="", recipient_name=""), "send_test": ""})
    )

    assert "Test sent to you" in html and "Hello [b]there[/b]" in html
    [sent] = bitrix.sent
    assert sent["USER_ID"] == 7
    assert Delivery.objects.get().kind == "test"


def test_a_test_inside_the_authors_weekly_limit_is_refused_at_the_test_button(
    app: App, line: Line, bitrix: MessagingBitrix
):
    LimitEntry.objects.create(
        portal=line.portal, line_code=line.code, user_id=7, sent_at=timezone.now()
    )

    html = text(app.post("send", {**compose_data(line), "send_test": ""}))

    sendbar = html[html.index('id="send-button"') :]
    assert 'data-code="USER_MESSAGE_LIMIT"' in sendbar
    assert "Your next test on this line is possible from" in sendbar
    assert bitrix.sent == []


# --- drafts ----------------------------------------------------------------------------------


def test_the_draft_autosaves_what_was_typed_and_comes_back(app: App, line: Line, client: Client):
    data = compose_data(line, **{"kb-0-width": "12x", "frame_token": app.token})

    html = text(app.post("draft", data, target="draft-status"))

    assert html.strip().startswith("Draft saved")
    draft = Draft.objects.get(user_id=7)
    assert draft.data["kb-0-width"] == "12x" and "frame_token" not in draft.data
    page = text(app.get("compose"))
    assert "Hello [b]there[/b]" in page and 'value="12x"' in page and "draft was restored" in page


def test_a_draft_naming_a_deleted_line_opens_on_the_usual_line(app: App, line: Line):
    Draft.objects.create(portal=line.portal, user_id=7, data={"line": "999999", "message": "hi"})

    html = text(app.get("compose"))

    assert f'<option value="{line.pk}" selected>' in html and "Choose one of" not in html


def test_drafts_are_per_user(app: App, line: Line, client: Client, admin_app: App):
    text(app.post("draft", compose_data(line, message="mine only")))

    assert "mine only" not in text(admin_app.get("compose"))


def test_starting_over_forgets_the_draft(app: App, line: Line):
    text(app.post("draft", compose_data(line)))

    html = text(app.post("reset", compose_data(line), target="composer"))

    assert not Draft.objects.exists()
    assert "Hello [b]there[/b]" not in html and f'<option value="{line.pk}" selected>' in html


def test_a_huge_draft_is_not_saved(app: App, line: Line):
    html = text(
        app.post(
            "draft",
            compose_data(
                line,
                message="x" * 19_000,
                **{f"attach-{i}-kind": "MESSAGE" for i in range(1, 3)},
                **{f"attach-{i}-text": "y" * 9_999 for i in range(1, 20)},
            ),
        )
    )

    assert "too large" in html or Draft.objects.exists()


# --- templates -------------------------------------------------------------------------------


def test_a_message_saved_as_a_template_loads_back_into_the_builders(app: App, line: Line):
    html = text(
        app.post(
            "template_save",
            {**compose_data(line), "save_as": " Release  note "},
            target="templates",
        )
    )

    assert html.lstrip().startswith('<section id="templates"')
    template = Template.objects.get()
    assert template.name == "Release note" and template.created_by == 7
    assert template.data["attach"]["BLOCKS"][0]["LINK"]["NAME"] == "Changelog"

    response = app.post(
        "template_load", {"line": str(line.pk), "user_id": "5"}, args=(template.pk,)
    )
    html = text(response)
    assert html.lstrip().startswith('<form id="composer"')
    assert "Hello [b]there[/b]" in html and 'value="Changelog"' in html and 'value="Open"' in html
    assert 'name="user_id" value="5"' in html
    assert "builder-changed" in response["HX-Trigger-After-Settle"]


def test_saving_under_an_existing_name_replaces_the_template(app: App, line: Line):
    text(app.post("template_save", {**compose_data(line), "save_as": "News"}))
    text(app.post("template_save", {**compose_data(line, message="v2"), "save_as": "News"}))

    assert Template.objects.get().data["message"] == "v2"


def test_a_template_that_could_not_be_sent_is_not_saved(app: App, line: Line):
    html = text(
        app.post("template_save", {**compose_data(line, **{"kb-0-link": "nope"}), "save_as": "Bad"})
    )

    assert "Keyboard · button 1 · Link" in html and not Template.objects.exists()


def test_a_template_needs_a_name(app: App, line: Line):
    html = text(app.post("template_save", {**compose_data(line), "save_as": "  "}))

    assert "Give the template a name" in html and not Template.objects.exists()


def test_deleting_a_template(app: App, line: Line):
    template = Template.objects.create(portal=line.portal, name="Old", data={"message": "x"})

    html = text(app.post("template_delete", args=(template.pk,), target="templates"))

    assert not Template.objects.exists() and "No templates yet" in html


# --- history ---------------------------------------------------------------------------------


@pytest.fixture
def history(line: Line) -> dict[str, Delivery]:
    second = Line.objects.create(portal=line.portal, code=OTHER_CODE, name="Sales")
    return {
        "sent": delivery_row(
            portal=line.portal,
            line=line,
            user_id=5,
            message="a",
            recipient_name="Anna",
            status="sent",
        ),
        "limited": delivery_row(
            portal=line.portal,
            line=line,
            user_id=6,
            message="b",
            recipient_name="Boris",
            status="limited",
            error_code="USER_MESSAGE_LIMIT",
        ),
        "unknown": delivery_row(
            portal=line.portal,
            line=second,
            user_id=7,
            message="c",
            recipient_name="Vera",
            status="unknown",
            error_code="TIMEOUT",
        ),
        "test": delivery_row(
            portal=line.portal,
            line=second,
            user_id=8,
            message="d",
            recipient_name="Me",
            status="sent",
            kind="test",
        ),
    }


def shown(html: str) -> set[int]:
    return {int(pk) for pk in re.findall(r'<tr data-delivery="(\d+)"', html)}


def test_history_filters_by_outcome_line_recipient_and_kind(
    app: App, line: Line, history: dict[str, Delivery]
):
    def ids(**filters: Any) -> set[int]:
        return shown(text(app.get("history", filters, target="history-table")))

    assert ids(status="limited") == {history["limited"].pk}
    assert ids(line=str(line.pk)) == {history["sent"].pk, history["limited"].pk}
    assert ids(recipient="vEr") == {history["unknown"].pk}
    assert ids(recipient="6") == {history["limited"].pk}
    assert ids(kind="test") == {history["test"].pk}
    assert ids(status="bogus", line="999999") == {d.pk for d in history.values()}


def test_history_shows_outcomes_and_error_codes(app: App, history: dict[str, Delivery]):
    html = text(app.get("history"))

    assert 'data-status="limited"' in html and "USER_MESSAGE_LIMIT" in html
    assert 'data-status="unknown"' in html


def test_history_filter_requests_render_only_the_table(app: App, history: dict[str, Delivery]):
    html = text(app.get("history", {"status": "sent"}, target="history-table"))

    assert html.lstrip().startswith('<div id="history-table"') and "<form" not in html


def test_history_is_paginated(app: App, line: Line):
    for i in range(30):
        delivery_row(portal=line.portal, line=line, user_id=i + 1, message=f"m{i}")

    first = text(app.get("history"))
    second = text(app.get("history", {"page": "2"}, target="history-table"))

    assert len(shown(first)) == 25 and len(shown(second)) == 5
    assert "Page 1 of 2" in first and "page=2" in first
    assert shown(first).isdisjoint(shown(second))


def test_a_delivery_shows_its_message_and_what_an_unknown_outcome_means(
    app: App, history: dict[str, Delivery]
):
    html = text(app.get("delivery", args=(history["unknown"].pk,)))

    assert "may have been delivered" in html and "b24-chat-message" in html


# --- hostile input ---------------------------------------------------------------------------

XSS = '"><img src=x onerror=alert(1)><script>alert(1)</script>'


def test_hostile_text_in_every_field_is_escaped(app: App, line: Line, bitrix: MessagingBitrix):
    data = compose_data(line, message=XSS, recipient_name=XSS, preview_width=XSS)
    for key in list(data):
        if key.startswith(("attach-0-", "kb-0-")) and not key.endswith("kind"):
            data[key] = XSS
    data.update(
        {
            "attach-color": XSS,
            "attach-1-kind": "GRID",
            "attach-1-item-0-name": XSS,
            "attach-1-item-0-value": XSS,
        }
    )

    for name in ("preview", "send", "attach", "keyboard", "recipient"):
        html = text(app.post(name, {**data, "add_block": "USER"}))
        assert "<script>alert(1)" not in html and "<img src=x" not in html, name

    html = text(app.post("template_save", {**data, "save_as": XSS}))
    assert "<script>alert(1)" not in html


# --- random input ----------------------------------------------------------------------------

_FIELDS = [
    "kind",
    "text",
    "link",
    "name",
    "desc",
    "preview",
    "width",
    "height",
    "size",
    "color",
    "color_token",
    "display",
    "value",
    "avatar",
    "avatar_type",
    "user_id",
    "chat_id",
    "extra_image",
    "bg_color",
    "text_color",
    "bg_color_token",
    "disabled",
    "block",
    "context",
]
_SMALL = st.integers(min_value=0, max_value=3)
_KEYS = st.one_of(
    st.sampled_from(
        [
            "line",
            "user_id",
            "recipient_name",
            "message",
            "url_preview",
            "preview_width",
            "unknown_delivery",
            "confirm_resend",
            "send_test",
            "attach-color",
            "attach-color_token",
            "attach_json",
            "keyboard_json",
            "save_as",
            "line_code",
            "pick_user_id",
            "pick_name",
            "add_block",
            "import_attach",
            "clear_attach",
            "add_button",
            "add_newline",
            "import_keyboard",
            "clear_keyboard",
            "clear_recipient",
            "frame_token",
        ]
    ),
    st.builds("attach-{}-{}".format, _SMALL, st.sampled_from(_FIELDS)),
    st.builds("attach-{}-item-{}-{}".format, _SMALL, _SMALL, st.sampled_from(_FIELDS)),
    st.builds("kb-{}-{}".format, _SMALL, st.sampled_from(_FIELDS)),
    st.builds(
        "{}_{}".format,
        st.sampled_from(
            [
                "remove_block",
                "move_up",
                "move_down",
                "duplicate_block",
                "add_item",
                "remove_button",
                "button_up",
                "button_down",
            ]
        ),
        st.integers(min_value=-1, max_value=40),
    ),
    st.builds("{}_{}_{}".format, st.sampled_from(["remove_item", "item_up"]), _SMALL, _SMALL),
    st.text(max_size=12),
)
_VALUES = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.sampled_from(
        [
            XSS,
            "<LINE>",
            "-1",
            "0",
            "7",
            "1e9",
            "99999999999999999999999",
            "#fff",
            "TRANSPARENT",
            "LINE",
            "ROW",
            "GRID",
            "MESSAGE",
            "USER",
            "button",
            "newline",
            "on",
            "mobile",
            "javascript:alert(1)",
            "https://example.com",
            "\x00",
            "{}",
            "[]",
            '{"BLOCKS": [{}]}',
            json.dumps(DOCS_ATTACH),
            '[{"TYPE": "NEWLINE"}]',
            "я" * 300,
        ]
    ),
)
_ENDPOINTS = [
    "send",
    "preview",
    "attach",
    "keyboard",
    "recipient",
    "draft",
    "template_save",
    "reset",
]


@given(
    data=st.dictionaries(_KEYS, _VALUES, max_size=20),
    endpoint=st.sampled_from(_ENDPOINTS),
)
@settings(
    max_examples=220,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_random_composer_posts_never_fail(
    app: App, line: Line, bitrix: MessagingBitrix, data: dict[str, str], endpoint: str
):
    data = {key: str(line.pk) if value == "<LINE>" else value for key, value in data.items()}

    response = app.post(endpoint, data, target=endpoint)

    assert response.status_code == 200
    assert "<script>alert(1)" not in response.content.decode()


@given(
    params=st.dictionaries(
        st.sampled_from(["status", "line", "kind", "recipient", "page", "recipient_q"]),
        _VALUES,
        max_size=5,
    )
)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_random_history_and_search_queries_never_fail(
    app: App, line: Line, bitrix: MessagingBitrix, params: dict[str, str]
):
    assert app.get("history", params, target="history-table").status_code == 200
    assert app.get("recipient_search", params).status_code == 200


# --- Django admin ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["line", "delivery", "limitentry", "template", "draft"])
def test_the_django_admin_lists_messaging_records(admin_client: Client, line: Line, model: str):
    delivery_row(portal=line.portal, line=line, user_id=5, message="m", status="sent")

    response = admin_client.get(reverse(f"admin:messaging_{model}_changelist"))

    assert response.status_code == 200
