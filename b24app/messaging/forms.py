"""Composer forms: the message form, the attachment and keyboard builders, and their actions.

The whole composer is one HTML form. Every htmx request posts all of it, so each view can
rebuild the full state from `request.POST`, apply one action and re-render one partial; nothing
is stored until Send (drafts aside). The builders are lists of small Django forms named by
position (`attach-3-link`, `attach-3-item-0-name`, `kb-2-text`); an action (`remove_block_3`,
`move_up_2`, `add_button`...) edits the raw list and the forms are rebuilt with new positions,
so whatever was typed survives every action, valid or not.

A block form only converts text to the builder objects of `payload` (ints, blank → None); what
Bitrix accepts is decided by `payload.validate_params`, whose problems carry paths such as
`ATTACH.BLOCKS[2].LINK.LINK`. `Composer.add_problems` puts each one next to its input.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from django import forms
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from b24app.messaging import payload
from b24app.messaging.models import Delivery, Line

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    from b24app.portals.models import Portal

MAX_BLOCKS = 30
MAX_ITEMS = 30
MAX_BUTTONS = 40
MAX_INT = 2**31 - 1
ATTACH_PREFIX = "attach"
KEYBOARD_PREFIX = "kb"
ATTACH_JSON = "attach_json"
KEYBOARD_JSON = "keyboard_json"

COLOR_TOKEN_CHOICES = [
    ("", _("default")),
    ("base", _("base")),
    ("primary", _("primary")),
    ("secondary", _("secondary")),
    ("alert", _("alert")),
]


@dataclass(frozen=True)
class Issue:
    """One message to show next to an input: a form error or a Bitrix/policy refusal."""

    message: str
    code: str = ""
    until: Any = None  # a datetime for USER_MESSAGE_LIMIT: when the recipient is free again


def _issues_of(form: forms.Form) -> dict[str, list[Issue]]:
    found: dict[str, list[Issue]] = {}
    for name, errors in form.errors.as_data().items():
        for error in errors:
            for message in error.messages:
                params = error.params if isinstance(error.params, Mapping) else {}
                found.setdefault(name, []).append(
                    Issue(message=str(message), code=error.code or "", until=params.get("until"))
                )
    return found


@dataclass(frozen=True)
class FieldRow:
    """One input as the templates draw it: the bound field, its issues and how to draw it."""

    field: forms.BoundField
    issues: list[Issue]
    kind: str  # text | area | check | select | color | number

    @property
    def widget(self) -> str:
        """The input, marked invalid (and tied to its error text) when it has issues."""
        if not self.issues:
            return self.field.as_widget()
        attrs: dict[str, str | bool] = {
            "aria-invalid": "true",
            "aria-describedby": f"{self.field.auto_id}-error",
        }
        return self.field.as_widget(attrs=attrs)


def _row_kind(bound: forms.BoundField) -> str:
    widget = bound.field.widget
    if isinstance(widget, forms.CheckboxInput):
        return "check"
    if isinstance(widget, forms.Textarea):
        return "area"
    if isinstance(widget, forms.Select):
        return "select"
    if isinstance(widget, forms.NumberInput):
        return "number"
    if "data-color-text" in widget.attrs:
        return "color"
    return "text"


class IssuesMixin:
    """Issues by field name (`issues.link`), for templates; `__all__` holds general ones."""

    extra: dict[str, list[Issue]]
    #: Fields drawn under "More" in the builders.
    advanced: ClassVar[tuple[str, ...]] = ()

    def _rows(self, *, advanced: bool) -> list[FieldRow]:
        assert isinstance(self, forms.Form)
        issues = self.issues
        return [
            FieldRow(bound, issues.get(bound.name, []), _row_kind(bound))
            for bound in self
            if (bound.name in self.advanced) == advanced and not bound.is_hidden
        ]

    @property
    def rows(self) -> list[FieldRow]:
        return self._rows(advanced=False)

    @property
    def more_rows(self) -> list[FieldRow]:
        return self._rows(advanced=True)

    @property
    def more_has_issues(self) -> bool:
        return any(row.issues for row in self.more_rows)

    @property
    def issues(self) -> dict[str, list[Issue]]:
        assert isinstance(self, forms.Form)
        merged = _issues_of(self)
        for name, issues in self.extra.items():
            merged.setdefault(name, []).extend(issues)
        return merged

    def add_issue(self, name: str, issue: Issue) -> None:
        self.extra.setdefault(name, []).append(issue)

    @property
    def general_issues(self) -> list[Issue]:
        return self.issues.get("__all__", [])


def _blank_to_none(value: Any) -> Any:
    return None if value in ("", None) else value


def _int_field(label: StrOrPromise, help_text: StrOrPromise = "") -> forms.IntegerField:
    return forms.IntegerField(
        label=label, required=False, min_value=1, max_value=MAX_INT, help_text=help_text
    )


def _url_field(label: StrOrPromise) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        max_length=2000,
        widget=forms.TextInput(attrs={"placeholder": "https://", "inputmode": "url"}),
    )


def _text_field(label: StrOrPromise, *, area: bool = False) -> forms.CharField:
    widget = forms.Textarea(attrs={"rows": 2}) if area else forms.TextInput()
    return forms.CharField(label=label, required=False, max_length=10_000, widget=widget)


def _network_id_field() -> forms.CharField:
    return forms.CharField(
        label=_("Bitrix24.Network ID"),
        required=False,
        max_length=20,
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
    )


def _color_field(label: StrOrPromise) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        max_length=20,
        widget=forms.TextInput(attrs={"placeholder": "#29619b", "data-color-text": ""}),
    )


# ---------------------------------------------------------------------------------------------
# The message form
# ---------------------------------------------------------------------------------------------


class ComposeForm(IssuesMixin, forms.Form):
    """Line, recipient, text and URL preview: everything but the two builders."""

    line = forms.ModelChoiceField(
        label=_("Open line"), queryset=Line.objects.none(), required=False
    )
    user_id = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_INT, widget=forms.HiddenInput
    )
    recipient_name = forms.CharField(required=False, max_length=200, widget=forms.HiddenInput)
    message = forms.CharField(
        label=_("Message"),
        required=False,
        max_length=20_000,
        widget=forms.Textarea(attrs={"rows": 6, "data-bb-area": ""}),
    )
    url_preview = forms.BooleanField(label=_("Show link previews"), required=False, initial=True)
    preview_width = forms.ChoiceField(
        choices=[("desktop", _("Desktop")), ("mobile", _("Mobile"))],
        required=False,
        initial="desktop",
        widget=forms.RadioSelect,
    )
    unknown_delivery = forms.IntegerField(
        required=False, min_value=1, max_value=2**62, widget=forms.HiddenInput
    )
    confirm_resend = forms.BooleanField(label=_("I checked: send it again anyway"), required=False)

    def __init__(self, data: Mapping[str, Any] | None = None, *, portal: Portal) -> None:
        super().__init__(data)
        self.extra = {}
        field = self.fields["line"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = Line.objects.filter(portal=portal)
        field.error_messages["invalid_choice"] = _("Choose one of this portal's open lines.")

    @property
    def message_row(self) -> FieldRow:
        return FieldRow(self["message"], self.issues.get("message", []), "area")

    def value(self, name: str) -> Any:
        """The cleaned value when valid, else None (for previews of half-typed input)."""
        if not self.is_bound:
            return self.fields[name].initial
        self.is_valid()
        return getattr(self, "cleaned_data", {}).get(name)

    @property
    def chosen_line(self) -> Line | None:
        line = self.value("line")
        return line if isinstance(line, Line) else None


class LineForm(IssuesMixin, forms.Form):
    """An admin's new open line: its 32-character CODE and a name for the team."""

    line_code = forms.CharField(label=_("Line code"), required=False, max_length=200, strip=True)
    line_name = forms.CharField(label=_("Name"), required=False, max_length=200)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(data)
        self.extra = {}

    def clean_line_code(self) -> str:
        code = str(self.cleaned_data.get("line_code") or "").strip()
        if not re.fullmatch(r"[\x21-\x7e]{32}", code):
            raise forms.ValidationError(
                _("The open line code is exactly 32 characters (letters and digits)."),
                code="CODE",
            )
        return code


class RecipientSearchForm(forms.Form):
    recipient_q = forms.CharField(required=False, max_length=100)

    def query(self) -> str:
        if not self.is_valid():
            return ""
        return " ".join(str(self.cleaned_data.get("recipient_q") or "").split())


class RecipientPickForm(forms.Form):
    """A user picked from the search results (or the portal's selector)."""

    pick_user_id = forms.IntegerField(required=False, min_value=1, max_value=MAX_INT)
    pick_name = forms.CharField(required=False, max_length=200)


class TemplateForm(IssuesMixin, forms.Form):
    save_as = forms.CharField(label=_("Template name"), required=False, max_length=200)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(data)
        self.extra = {}


class HistoryFilterForm(forms.Form):
    """The history page's filters; anything invalid is simply not applied."""

    status = forms.ChoiceField(
        label=_("Outcome"), required=False, choices=[("", _("any")), *Delivery.Status.choices]
    )
    kind = forms.ChoiceField(
        label=_("Kind"), required=False, choices=[("", _("any")), *Delivery.Kind.choices]
    )
    line = forms.ModelChoiceField(
        label=_("Line"), required=False, queryset=Line.objects.none(), empty_label=_("any")
    )
    recipient = forms.CharField(label=_("Recipient"), required=False, max_length=200)
    page = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)

    def __init__(self, data: Mapping[str, Any] | None, *, portal: Portal) -> None:
        super().__init__(data)
        field = self.fields["line"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = Line.objects.filter(portal=portal)

    def filters(self) -> dict[str, Any]:
        """Keyword arguments for `services.deliveries_for` from the valid filters."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        recipient = " ".join(str(data.get("recipient") or "").split())
        found: dict[str, Any] = {
            "status": data.get("status") or "",
            "kind": data.get("kind") or "",
            "line": data.get("line"),
        }
        if recipient.isdigit() and len(recipient) < 10:
            found["user_id"] = int(recipient)
        else:
            found["recipient"] = recipient
        return found

    def page_number(self) -> int:
        self.is_valid()
        return int(getattr(self, "cleaned_data", {}).get("page") or 1)


# ---------------------------------------------------------------------------------------------
# Raw builder data: what the user typed, grouped by position
# ---------------------------------------------------------------------------------------------


@dataclass
class RawEntry:
    """One block or button as typed: its kind, its fields, and (for lists) its items."""

    kind: str
    fields: dict[str, str] = field(default_factory=dict)
    items: list[dict[str, str]] = field(default_factory=list)


_ATTACH_KEY = re.compile(rf"{ATTACH_PREFIX}-(\d{{1,4}})-(?:item-(\d{{1,4}})-)?([a-z_]{{1,20}})")
_KEYBOARD_KEY = re.compile(rf"{KEYBOARD_PREFIX}-(\d{{1,4}})-([a-z_]{{1,20}})")


def _value(data: Mapping[str, Any], key: str) -> str:
    getter = getattr(data, "get", None)
    value = getter(key) if getter else None
    return value if isinstance(value, str) else ""


def read_attach(data: Mapping[str, Any]) -> list[RawEntry]:
    """The attachment blocks in `data`, in position order (at most MAX_BLOCKS)."""
    blocks: dict[int, RawEntry] = {}
    items: dict[int, dict[int, dict[str, str]]] = {}
    for key in list(data.keys())[:5000]:
        match = _ATTACH_KEY.fullmatch(str(key))
        if not match:
            continue
        index, item, name = int(match[1]), match[2], match[3]
        if item is None:
            entry = blocks.setdefault(index, RawEntry(kind=""))
            if name == "kind":
                entry.kind = _value(data, key)
            else:
                entry.fields[name] = _value(data, key)
        else:
            items.setdefault(index, {}).setdefault(int(item), {})[name] = _value(data, key)
    ordered: list[RawEntry] = []
    for index in sorted(blocks):
        entry = blocks[index]
        if entry.kind not in BLOCK_FORMS:
            continue
        entry.items = [items[index][j] for j in sorted(items.get(index, {}))][:MAX_ITEMS]
        ordered.append(entry)
    return ordered[:MAX_BLOCKS]


def read_keyboard(data: Mapping[str, Any]) -> list[RawEntry]:
    """The keyboard rows in `data`, in position order (at most MAX_BUTTONS)."""
    rows: dict[int, RawEntry] = {}
    for key in list(data.keys())[:5000]:
        match = _KEYBOARD_KEY.fullmatch(str(key))
        if not match:
            continue
        entry = rows.setdefault(int(match[1]), RawEntry(kind=""))
        if match[2] == "kind":
            entry.kind = _value(data, key)
        else:
            entry.fields[match[2]] = _value(data, key)
    ordered = [rows[i] for i in sorted(rows) if rows[i].kind in ("button", "newline")]
    return ordered[:MAX_BUTTONS]


def attach_data(blocks: Sequence[RawEntry], settings: Mapping[str, str]) -> dict[str, str]:
    """Form data for the attachment builder (positions renumbered from 0)."""
    data = {f"{ATTACH_PREFIX}-{key}": value for key, value in settings.items()}
    for i, block in enumerate(blocks):
        data[f"{ATTACH_PREFIX}-{i}-kind"] = block.kind
        for name, value in block.fields.items():
            data[f"{ATTACH_PREFIX}-{i}-{name}"] = value
        for j, item in enumerate(block.items):
            for name, value in item.items():
                data[f"{ATTACH_PREFIX}-{i}-item-{j}-{name}"] = value
    return data


def keyboard_data(rows: Sequence[RawEntry]) -> dict[str, str]:
    """Form data for the keyboard builder (positions renumbered from 0)."""
    data: dict[str, str] = {}
    for i, row in enumerate(rows):
        data[f"{KEYBOARD_PREFIX}-{i}-kind"] = row.kind
        for name, value in row.fields.items():
            data[f"{KEYBOARD_PREFIX}-{i}-{name}"] = value
    return data


# ---------------------------------------------------------------------------------------------
# Block, item and button forms
# ---------------------------------------------------------------------------------------------


class _SharedFields(dict[str, forms.Field]):
    """`base_fields` whose "deep copy" shares the Field objects (see `_share_fields`)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, forms.Field]:
        return dict(self)


def _share_fields(form_class: type[forms.Form]) -> None:
    """Let every instance of `form_class` use its class's Field objects instead of copies.

    Django deep-copies a form's fields for each instance so that one instance may change its
    own. The builder forms never do, and the live preview builds a few dozen of them on every
    pause in typing: the copies were the largest part of its time.
    """
    if not isinstance(form_class.__dict__.get("base_fields"), _SharedFields):
        form_class.base_fields = _SharedFields(form_class.base_fields)


class EntryForm(IssuesMixin, forms.Form):
    """Base of the builder forms: bound to already-prefixed data, with extra issues.

    Subclasses must not change `self.fields[...]` per instance: the Field objects are shared.
    """

    def __init__(self, data: Mapping[str, str], *, prefix: str) -> None:
        _share_fields(type(self))
        super().__init__(data, prefix=prefix)
        self.extra = {}

    def opt(self, name: str) -> Any:
        return _blank_to_none(self.cleaned_data.get(name))

    def string(self, name: str) -> str:
        return str(self.cleaned_data.get(name) or "")


class ImageItemForm(EntryForm):
    advanced = ("width", "height")
    link = _url_field(_("Image link"))
    name = _text_field(_("Title"))
    preview = _url_field(_("Preview image"))
    width = _int_field(_("Width, px"))
    height = _int_field(_("Height, px"))

    def build(self) -> payload.ImageItem:
        return payload.ImageItem(
            link=self.string("link"),
            name=self.opt("name"),
            preview=self.opt("preview"),
            width=self.opt("width"),
            height=self.opt("height"),
        )


class FileItemForm(EntryForm):
    link = _url_field(_("File link"))
    name = _text_field(_("File name"))
    size = forms.IntegerField(label=_("Size, bytes"), required=False, min_value=1)

    def build(self) -> payload.FileItem:
        return payload.FileItem(
            link=self.string("link"), name=self.opt("name"), size=self.opt("size")
        )


GRID_DISPLAY_CHOICES = [
    ("BLOCK", _("Block: name above value")),
    ("LINE", _("Line: cards side by side")),
    ("ROW", _("Row: name | value")),
    ("TABLE", _("Table")),
]


class GridItemForm(EntryForm):
    advanced = ("height", "color_token", "user_id", "chat_id")
    display = forms.ChoiceField(label=_("Display"), required=False, choices=GRID_DISPLAY_CHOICES)
    name = _text_field(_("Name"))
    value = _text_field(_("Value"), area=True)
    width = _int_field(_("Width, px"))
    height = _int_field(_("Height, px"))
    color = _color_field(_("Value colour"))
    color_token = forms.ChoiceField(
        label=_("Colour token"), required=False, choices=COLOR_TOKEN_CHOICES
    )
    link = _url_field(_("Link"))
    user_id = _int_field(_("User ID"))
    chat_id = _int_field(_("Chat ID"))

    def build(self) -> payload.GridItem:
        return payload.GridItem(
            name=self.string("name"),
            value=self.string("value"),
            display=self.cleaned_data.get("display") or "BLOCK",
            width=self.opt("width"),
            height=self.opt("height"),
            color=self.opt("color"),
            color_token=self.opt("color_token"),
            link=self.opt("link"),
            user_id=self.opt("user_id"),
            chat_id=self.opt("chat_id"),
        )


class BlockForm(EntryForm):
    """One attachment block; `kind` is its Bitrix type."""

    kind: ClassVar[str] = ""
    label: ClassVar[StrOrPromise] = ""
    item_form: ClassVar[type[EntryForm] | None] = None
    item_label: ClassVar[StrOrPromise] = ""
    index: int
    items: list[EntryForm]

    def build(self) -> payload.Block:
        raise NotImplementedError

    @property
    def all_valid(self) -> bool:
        return self.is_valid() and all(item.is_valid() for item in self.items)

    @property
    def has_items(self) -> bool:
        """Whether this block is a list of items (templates cannot test `item_form`)."""
        return self.item_form is not None


class MessageBlockForm(BlockForm):
    kind = "MESSAGE"
    label = _("Text")
    text = forms.CharField(
        label=_("Text"),
        required=False,
        max_length=40_000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def build(self) -> payload.MessageBlock:
        return payload.MessageBlock(text=self.string("text"))


class LinkBlockForm(BlockForm):
    advanced = ("html", "width", "height", "user_id", "chat_id", "network_id")
    kind = "LINK"
    label = _("Link")
    link = _url_field(_("Link"))
    name = _text_field(_("Title"))
    desc = _text_field(_("Description"), area=True)
    preview = _url_field(_("Preview image"))
    html = _text_field(_("HTML description (instead of Description)"), area=True)
    width = _int_field(_("Preview width, px"))
    height = _int_field(_("Preview height, px"))
    # A link to a user, chat or network contact instead of a URL (with a Title).
    user_id = _int_field(_("User ID"))
    chat_id = _int_field(_("Chat ID"))
    network_id = _network_id_field()

    def build(self) -> payload.LinkBlock:
        return payload.LinkBlock(
            link=self.opt("link"),
            name=self.opt("name"),
            desc=self.opt("desc"),
            preview=self.opt("preview"),
            width=self.opt("width"),
            height=self.opt("height"),
            html=self.opt("html"),
            user_id=self.opt("user_id"),
            chat_id=self.opt("chat_id"),
            network_id=self.opt("network_id"),
        )


class RichLinkBlockForm(BlockForm):
    advanced = ("html", "user_id", "chat_id", "network_id")
    kind = "RICH_LINK"
    label = _("Rich link")
    link = _url_field(_("Link"))
    name = _text_field(_("Title"))
    desc = _text_field(_("Description"), area=True)
    preview = _url_field(_("Preview image"))
    extra_image = _url_field(_("Extra image"))
    html = _text_field(_("HTML description (instead of Description)"), area=True)
    user_id = _int_field(_("User ID"))
    chat_id = _int_field(_("Chat ID"))
    network_id = _network_id_field()

    def build(self) -> payload.RichLinkBlock:
        return payload.RichLinkBlock(
            link=self.opt("link"),
            name=self.opt("name"),
            desc=self.opt("desc"),
            preview=self.opt("preview"),
            extra_image=self.opt("extra_image"),
            html=self.opt("html"),
            user_id=self.opt("user_id"),
            chat_id=self.opt("chat_id"),
            network_id=self.opt("network_id"),
        )


class UserBlockForm(BlockForm):
    advanced = ("avatar_type", "user_id", "chat_id", "bot_id", "network_id")
    kind = "USER"
    label = _("User")
    name = _text_field(pgettext_lazy("of a person", "Name"))
    avatar = _url_field(_("Avatar image"))
    avatar_type = forms.ChoiceField(
        label=_("Avatar type"),
        required=False,
        choices=[("", _("default")), ("USER", _("person")), ("CHAT", _("chat")), ("BOT", _("bot"))],
    )
    link = _url_field(_("Link"))
    # Instead of a link: one of these ids (Bitrix keeps only one target).
    user_id = _int_field(_("User ID"))
    chat_id = _int_field(_("Chat ID"))
    bot_id = _int_field(_("Bot ID"))
    network_id = _network_id_field()

    def build(self) -> payload.UserBlock:
        return payload.UserBlock(
            name=self.string("name"),
            avatar=self.opt("avatar"),
            avatar_type=self.opt("avatar_type"),
            link=self.opt("link"),
            user_id=self.opt("user_id"),
            chat_id=self.opt("chat_id"),
            bot_id=self.opt("bot_id"),
            network_id=self.opt("network_id"),
        )


class GridBlockForm(BlockForm):
    kind = "GRID"
    label = _("Grid")
    item_form = GridItemForm
    item_label = _("Cell")

    def build(self) -> payload.GridBlock:
        return payload.GridBlock(items=tuple(_build_item(i, GridItemForm) for i in self.items))


class ImageBlockForm(BlockForm):
    kind = "IMAGE"
    label = _("Images")
    item_form = ImageItemForm
    item_label = _("Image")

    def build(self) -> payload.ImageBlock:
        return payload.ImageBlock(items=tuple(_build_item(i, ImageItemForm) for i in self.items))


class FileBlockForm(BlockForm):
    kind = "FILE"
    label = _("Files")
    item_form = FileItemForm
    item_label = _("File")

    def build(self) -> payload.FileBlock:
        return payload.FileBlock(items=tuple(_build_item(i, FileItemForm) for i in self.items))


class DelimiterBlockForm(BlockForm):
    kind = "DELIMITER"
    label = _("Delimiter")
    size = _int_field(_("Width, px"))
    color = _color_field(_("Colour"))

    def build(self) -> payload.DelimiterBlock:
        return payload.DelimiterBlock(size=self.opt("size") or 200, color=self.opt("color"))


def _build_item(form: EntryForm, cls: type[Any]) -> Any:
    assert isinstance(form, cls)
    return form.build()


BLOCK_FORMS: dict[str, type[BlockForm]] = {
    cls.kind: cls
    for cls in (
        MessageBlockForm,
        LinkBlockForm,
        RichLinkBlockForm,
        UserBlockForm,
        GridBlockForm,
        ImageBlockForm,
        FileBlockForm,
        DelimiterBlockForm,
    )
}


class AttachSettingsForm(IssuesMixin, forms.Form):
    color = _color_field(_("Bar colour"))
    color_token = forms.ChoiceField(
        label=_("Colour token"), required=False, choices=COLOR_TOKEN_CHOICES
    )

    def __init__(self, data: Mapping[str, str]) -> None:
        _share_fields(type(self))
        super().__init__(data, prefix=ATTACH_PREFIX)
        self.extra = {}

    def clean_color(self) -> str:
        color = str(self.cleaned_data.get("color") or "").strip()
        # The policy takes TRANSPARENT in capitals only (spec §5.5 compares case-insensitively).
        return "TRANSPARENT" if color.upper() == "TRANSPARENT" else color


class ButtonForm(EntryForm):
    advanced = ("bg_color_token", "off_bg_color", "off_text_color", "width", "block", "context")
    text = _text_field(_("Text"))
    link = _url_field(_("Link"))
    bg_color = _color_field(_("Background"))
    text_color = _color_field(_("Text colour"))
    off_bg_color = _color_field(_("Background when off"))
    off_text_color = _color_field(_("Text colour when off"))
    bg_color_token = forms.ChoiceField(
        label=_("Background token"), required=False, choices=COLOR_TOKEN_CHOICES
    )
    display = forms.ChoiceField(
        label=_("Display"),
        required=False,
        choices=[("", _("default (block)")), ("LINE", _("in a row")), ("BLOCK", _("full width"))],
    )
    width = _int_field(_("Width, px"))
    disabled = forms.BooleanField(label=_("Disabled"), required=False)
    block = forms.BooleanField(label=_("Block after press"), required=False)
    context = forms.ChoiceField(
        label=_("Show on"),
        required=False,
        choices=[
            ("", _("all devices")),
            ("DESKTOP", _("desktop only")),
            ("MOBILE", _("mobile only")),
        ],
    )
    index: int
    kind: str

    def build(self) -> payload.LinkButton:
        return payload.LinkButton(
            text=self.string("text"),
            link=self.string("link"),
            bg_color=self.opt("bg_color"),
            text_color=self.opt("text_color"),
            bg_color_token=self.opt("bg_color_token"),
            display=self.opt("display"),
            width=self.opt("width"),
            disabled=True if self.cleaned_data.get("disabled") else None,
            block=True if self.cleaned_data.get("block") else None,
            context=self.opt("context"),
            off_bg_color=self.opt("off_bg_color"),
            off_text_color=self.opt("off_text_color"),
        )


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """A builder action from the name of the clicked button, e.g. `remove_item_2_1`."""

    name: str
    args: tuple[int, ...] = ()
    value: str = ""


_ACTION_RE = re.compile(
    r"(add_block|import_attach|clear_attach|add_button|add_newline|import_keyboard|clear_keyboard)"
    r"|(remove_block|move_up|move_down|duplicate_block|add_item|remove_button|button_up"
    r"|button_down)_(\d{1,4})"
    r"|(remove_item|item_up)_(\d{1,4})_(\d{1,4})"
)


def read_action(data: Mapping[str, Any]) -> Action | None:
    """The first builder action named in `data`, if any."""
    for key in list(data.keys())[:5000]:
        match = _ACTION_RE.fullmatch(str(key))
        if not match:
            continue
        if match[1]:
            return Action(match[1], (), _value(data, key))
        if match[2]:
            return Action(match[2], (int(match[3]),))
        return Action(match[4], (int(match[5]), int(match[6])))
    return None


def _move(entries: list[Any], index: int, step: int) -> None:
    target = index + step
    if 0 <= index < len(entries) and 0 <= target < len(entries):
        entries[index], entries[target] = entries[target], entries[index]


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)


class AttachBuilder:
    """The attachment builder: colour settings and a list of block forms."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.settings = AttachSettingsForm(
            {
                f"{ATTACH_PREFIX}-color": _value(data, f"{ATTACH_PREFIX}-color"),
                f"{ATTACH_PREFIX}-color_token": _value(data, f"{ATTACH_PREFIX}-color_token"),
            }
        )
        self.raw = read_attach(data)
        self.json_text = _value(data, ATTACH_JSON)
        self.json_issues: list[Issue] = []
        self.general: list[Issue] = []
        self.notice = ""
        self.left_out: list[LeftOut] = []
        self._build_forms()

    def _build_forms(self) -> None:
        self.revision = getattr(self, "revision", 0) + 1  # what Composer's cache keys on
        data = attach_data(self.raw, {})
        self.blocks: list[BlockForm] = []
        for i, raw in enumerate(self.raw):
            form = BLOCK_FORMS[raw.kind](data, prefix=f"{ATTACH_PREFIX}-{i}")
            form.index = i
            item_form = form.item_form
            form.items = (
                [
                    item_form(data, prefix=f"{ATTACH_PREFIX}-{i}-item-{j}")
                    for j in range(len(raw.items))
                ]
                if item_form
                else []
            )
            self.blocks.append(form)

    @property
    def settings_data(self) -> dict[str, str]:
        return {
            "color": _value(self.settings.data, f"{ATTACH_PREFIX}-color"),
            "color_token": _value(self.settings.data, f"{ATTACH_PREFIX}-color_token"),
        }

    # --- actions ---

    def apply(self, action: Action) -> None:
        """Apply one action to the unsaved blocks and rebuild the forms."""
        raw = self.raw
        name, args = action.name, action.args
        if name == "add_block":
            kind = action.value if action.value in BLOCK_FORMS else "MESSAGE"
            if len(raw) >= MAX_BLOCKS:
                self.general.append(Issue(str(_("An attachment holds at most 30 blocks here."))))
            else:
                entry = RawEntry(kind=kind)
                if BLOCK_FORMS[kind].item_form is not None:
                    entry.items = [{"display": "LINE"} if kind == "GRID" else {}]
                raw.append(entry)
        elif name == "remove_block" and args[0] < len(raw):
            del raw[args[0]]
        elif name == "move_up":
            _move(raw, args[0], -1)
        elif name == "move_down":
            _move(raw, args[0], 1)
        elif name == "duplicate_block" and args[0] < len(raw) and len(raw) < MAX_BLOCKS:
            original = raw[args[0]]
            copy = RawEntry(original.kind, dict(original.fields), [dict(i) for i in original.items])
            raw.insert(args[0] + 1, copy)
        elif name == "add_item" and args[0] < len(raw):
            block = raw[args[0]]
            if BLOCK_FORMS[block.kind].item_form is not None and len(block.items) < MAX_ITEMS:
                last_display = block.items[-1].get("display", "") if block.items else ""
                block.items.append({"display": last_display} if block.kind == "GRID" else {})
        elif name == "remove_item" and args[0] < len(raw):
            items = raw[args[0]].items
            if args[1] < len(items):
                del items[args[1]]
        elif name == "item_up" and args[0] < len(raw):
            _move(raw[args[0]].items, args[1], -1)
        elif name == "clear_attach":
            raw.clear()
            self.settings = AttachSettingsForm({})
        elif name == "import_attach":
            self.import_json(self.json_text)
        self._build_forms()

    def import_json(self, text: str) -> None:
        """Open pasted ATTACH JSON in the builder, or explain why it cannot be opened."""
        parsed = _parse_json(text)
        if isinstance(parsed, Issue):
            self.json_issues.append(parsed)
            return
        try:
            attach = payload.Attach.from_bitrix(parsed)
        except payload.PayloadError as exc:
            loaded = _lenient_attach(parsed)
            if loaded is None:
                self.json_issues.extend(_problem_issues(exc.problems))
                return
            self.raw, settings, skipped = loaded
            self.notice, self.left_out = _import_notice(skipped, exc.problems)
        else:
            self.raw, settings = raw_attach(attach)
            self.notice = str(_("Attachment opened in the builder."))
        self.settings = AttachSettingsForm(
            {f"{ATTACH_PREFIX}-{key}": value for key, value in settings.items()}
        )

    # --- results ---

    @property
    def is_empty(self) -> bool:
        return not self.raw and not any(self.settings_data.values())

    @property
    def all_valid(self) -> bool:
        return self.settings.is_valid() and all(block.all_valid for block in self.blocks)

    def build(self) -> payload.Attach | None:
        """The attachment as builder objects; None when empty or a field is malformed."""
        if not self.blocks or not self.all_valid:
            return None
        return payload.Attach(
            blocks=tuple(block.build() for block in self.blocks),
            color=_blank_to_none(self.settings.cleaned_data.get("color")),
            color_token=_blank_to_none(self.settings.cleaned_data.get("color_token")),
        )

    def partial_build(self) -> payload.Attach | None:
        """The valid blocks only, for the live preview while some field is half-typed."""
        blocks = tuple(block.build() for block in self.blocks if block.all_valid)
        if not blocks:
            return None
        settings_ok = self.settings.is_valid()
        cleaned = self.settings.cleaned_data if settings_ok else {}
        return payload.Attach(
            blocks=blocks,
            color=_blank_to_none(cleaned.get("color")),
            color_token=_blank_to_none(cleaned.get("color_token")),
        )

    def export_json(self) -> str:
        attach = self.build()
        return _dump(attach.to_bitrix()) if attach else ""

    def add_problem(self, path: str, issue: Issue) -> None:
        """Put a problem at `ATTACH...` next to its block, item or field."""
        rest = path[len("ATTACH") :]
        settings_match = re.fullmatch(r"\.(COLOR|COLOR_TOKEN)", rest)
        if settings_match:
            self.settings.add_issue(settings_match[1].lower(), issue)
            return
        match = re.fullmatch(
            r"\.BLOCKS\[(\d+)\](?:\.([A-Z_]+))?(?:\[(\d+)\])?(?:\.([A-Z_]+))?.*", rest
        )
        if not match or int(match[1]) >= len(self.blocks):
            self.general.append(issue)
            return
        block = self.blocks[int(match[1])]
        item_index, name = match[3], match[4]
        if item_index is not None and int(item_index) < len(block.items):
            _place(block.items[int(item_index)], name, issue)
        elif block.kind == "MESSAGE" and match[2] == "MESSAGE" and not name:
            block.add_issue("text", issue)
        elif block.item_form is not None and name is None and match[2]:
            block.add_issue("__all__", issue)
        else:
            _place(block, name, issue)


class KeyboardBuilder:
    """The keyboard builder: rows of link buttons and line breaks."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.raw = read_keyboard(data)
        self.json_text = _value(data, KEYBOARD_JSON)
        self.json_issues: list[Issue] = []
        self.general: list[Issue] = []
        self.notice = ""
        self.left_out: list[LeftOut] = []
        self._build_forms()

    def _build_forms(self) -> None:
        self.revision = getattr(self, "revision", 0) + 1  # what Composer's cache keys on
        data = keyboard_data(self.raw)
        self.rows: list[ButtonForm] = []
        for i, raw in enumerate(self.raw):
            form = ButtonForm(data, prefix=f"{KEYBOARD_PREFIX}-{i}")
            form.index = i
            form.kind = raw.kind
            self.rows.append(form)

    def apply(self, action: Action) -> None:
        """Apply one action to the unsaved rows and rebuild the forms."""
        raw = self.raw
        name, args = action.name, action.args
        if name in ("add_button", "add_newline"):
            if len(raw) >= MAX_BUTTONS:
                self.general.append(Issue(str(_("A keyboard holds at most 40 rows here."))))
            elif name == "add_button":
                raw.append(RawEntry(kind="button", fields={"display": "LINE"}))
            else:
                raw.append(RawEntry(kind="newline"))
        elif name == "remove_button" and args[0] < len(raw):
            del raw[args[0]]
        elif name == "button_up":
            _move(raw, args[0], -1)
        elif name == "button_down":
            _move(raw, args[0], 1)
        elif name == "clear_keyboard":
            raw.clear()
        elif name == "import_keyboard":
            self.import_json(self.json_text)
        self._build_forms()

    def import_json(self, text: str) -> None:
        """Open pasted KEYBOARD JSON in the builder, or explain why it cannot be opened."""
        parsed = _parse_json(text)
        if isinstance(parsed, Issue):
            self.json_issues.append(parsed)
            return
        try:
            keyboard = payload.Keyboard.from_bitrix(parsed)
        except payload.PayloadError as exc:
            loaded = _lenient_keyboard(parsed)
            if loaded is None:
                self.json_issues.extend(_problem_issues(exc.problems))
                return
            self.raw, skipped = loaded
            self.notice, self.left_out = _import_notice(skipped, exc.problems)
        else:
            self.raw = raw_keyboard(keyboard)
            self.notice = str(_("Keyboard opened in the builder."))

    @property
    def is_empty(self) -> bool:
        return not self.raw

    @property
    def all_valid(self) -> bool:
        return all(row.is_valid() for row in self.rows)

    def _buttons(
        self, rows: Iterable[ButtonForm]
    ) -> tuple[payload.LinkButton | payload.NewLine, ...]:
        return tuple(payload.NewLine() if row.kind == "newline" else row.build() for row in rows)

    def build(self) -> payload.Keyboard | None:
        """The keyboard as builder objects; None when empty or a field is malformed."""
        if not self.rows or not self.all_valid:
            return None
        return payload.Keyboard(buttons=self._buttons(self.rows))

    def partial_build(self) -> payload.Keyboard | None:
        rows = [row for row in self.rows if row.is_valid()]
        return payload.Keyboard(buttons=self._buttons(rows)) if rows else None

    def export_json(self) -> str:
        keyboard = self.build()
        return _dump(keyboard.to_bitrix()) if keyboard else ""

    def add_problem(self, path: str, issue: Issue) -> None:
        """Put a problem at `KEYBOARD...` next to its button or field."""
        match = re.fullmatch(r"KEYBOARD(?:\.BUTTONS)?\[(\d+)\](?:\.([A-Z_]+))?.*", path)
        if not match or int(match[1]) >= len(self.rows):
            self.general.append(issue)
            return
        _place(self.rows[int(match[1])], match[2], issue)


def _place(form: EntryForm, bitrix_name: str | None, issue: Issue) -> None:
    name = (bitrix_name or "").lower()
    if name and name in form.fields:
        form.add_issue(name, issue)
    else:
        form.add_issue("__all__", issue)


# ---------------------------------------------------------------------------------------------
# Converting Bitrix structures to builder data (import, templates)
# ---------------------------------------------------------------------------------------------


def _parse_json(text: str) -> Any:
    text = text.strip()
    if not text:
        return Issue(str(_("Paste the JSON first.")), code="JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        return Issue(
            str(
                _("This is not valid JSON: %(error)s (line %(line)s, column %(column)s).")
                % {"error": exc.msg, "line": exc.lineno, "column": exc.colno}
            ),
            code="JSON",
        )
    except (ValueError, RecursionError):
        return Issue(str(_("This is not valid JSON.")), code="JSON")


def _problem_issues(problems: Iterable[payload.Problem]) -> list[Issue]:
    return [Issue(f"{p.field}: {p.message}", code=p.code) for p in problems]


@dataclass(frozen=True)
class LeftOut:
    """A part of imported JSON the builder did not take, with the policy's reason."""

    path: str
    reason: str


def _import_notice(
    skipped: Sequence[str], problems: Iterable[payload.Problem]
) -> tuple[str, list[LeftOut]]:
    """The notice after a lenient import: each part left out, and why the policy refuses it.

    `skipped` holds payload paths (`ATTACH.BLOCKS[2].LINK.FOO`), the same paths the policy's
    problems carry, so each part gets the policy's own reason, not a guess.
    """
    if not skipped:
        return str(_("Opened with problems: fix the marked fields before sending.")), []
    reasons: dict[str, str] = {}
    for problem in problems:
        reasons.setdefault(problem.field, str(problem.message))
    fallback = str(_("The builder cannot hold this part."))
    left_out = [LeftOut(path, reasons.get(path, fallback)) for path in skipped[:10]]
    return str(_("Opened. These parts were left out:")), left_out


def _text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, int | float | str):
        return str(value)
    return ""


def _fields_of(item: Any, names: Iterable[str], skipped: list[str], where: str) -> dict[str, str]:
    if not isinstance(item, Mapping):
        skipped.append(where)
        return {}
    wanted = {name.upper(): name for name in names}
    fields: dict[str, str] = {}
    for key, value in item.items():
        name = wanted.get(str(key).upper())
        if name is None or isinstance(value, Mapping | list):
            skipped.append(f"{where}.{key}")
            continue
        fields[name] = _text_of(value)
    return fields


def _form_names(form: type[forms.Form]) -> list[str]:
    return list(form.base_fields)


def _raw_block(kind: str, body: Any, skipped: list[str], where: str) -> list[RawEntry]:
    """Builder entries for one block; `where` is its payload path (`ATTACH.BLOCKS[2]`)."""
    form = BLOCK_FORMS[kind]
    where = f"{where}.{kind}"
    if kind == "MESSAGE":
        text = body
        if isinstance(body, Mapping):
            # The object form (TEXT, AS_DESCRIPTION) is refused: keep its text, say why.
            skipped.append(where)
            text = body.get("TEXT")
        return [RawEntry(kind, {"text": _text_of(text)})]
    many = isinstance(body, list) and kind != "DELIMITER"
    bodies = body if many else [body]
    paths = [f"{where}[{j}]" if many else where for j in range(len(bodies))]
    if form.item_form is not None:
        names = _form_names(form.item_form)
        return [
            RawEntry(
                kind,
                items=[
                    _fields_of(item, names, skipped, path)
                    for item, path in zip(bodies[:MAX_ITEMS], paths, strict=False)
                ],
            )
        ]
    names = _form_names(form)
    return [
        RawEntry(kind, _fields_of(item, names, skipped, path))
        for item, path in zip(bodies, paths, strict=True)
    ]


def _attach_settings(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {
        "color": _text_of(value.get("COLOR")),
        "color_token": _text_of(value.get("COLOR_TOKEN")),
    }


def _lenient_attach(value: Any) -> tuple[list[RawEntry], dict[str, str], list[str]] | None:
    """Load whatever the builder can hold from an ATTACH the policy refuses; report the rest."""
    if isinstance(value, Mapping):
        blocks, base = value.get("BLOCKS"), "ATTACH.BLOCKS"
        skipped = [
            f"ATTACH.{key}" for key in value if key not in ("BLOCKS", "COLOR", "COLOR_TOKEN")
        ]
    else:
        blocks, base, skipped = value, "ATTACH", []
    if not isinstance(blocks, list):
        return None
    raw: list[RawEntry] = []
    for i, block in enumerate(blocks[:MAX_BLOCKS]):
        where = f"{base}[{i}]"
        if not isinstance(block, Mapping) or not block:
            skipped.append(where)
            continue
        for kind, body in block.items():
            if str(kind).upper() in BLOCK_FORMS:
                raw.extend(_raw_block(str(kind).upper(), body, skipped, where))
            else:
                skipped.append(f"{where}.{kind}")
    if not raw:
        return None
    return raw[:MAX_BLOCKS], _attach_settings(value), skipped


def raw_attach(attach: payload.Attach) -> tuple[list[RawEntry], dict[str, str]]:
    """Builder data for an attachment object."""
    loaded = _lenient_attach(attach.to_bitrix())
    return (loaded[0], loaded[1]) if loaded else ([], {})


def _lenient_keyboard(value: Any) -> tuple[list[RawEntry], list[str]] | None:
    """Load whatever the builder can hold from a KEYBOARD the policy refuses; report the rest."""
    if isinstance(value, Mapping):
        buttons, base = value.get("BUTTONS"), "KEYBOARD.BUTTONS"
        skipped = [f"KEYBOARD.{key}" for key in value if key != "BUTTONS"]
    else:
        buttons, base, skipped = value, "KEYBOARD", []
    if not isinstance(buttons, list):
        return None
    names = _form_names(ButtonForm)
    rows: list[RawEntry] = []
    for i, button in enumerate(buttons[:MAX_BUTTONS]):
        if isinstance(button, Mapping) and str(button.get("TYPE", "")).upper() == "NEWLINE":
            rows.append(RawEntry("newline"))
            continue
        fields = _fields_of(button, names, skipped, f"{base}[{i}]")
        for flag in ("disabled", "block"):
            fields[flag] = "on" if fields.get(flag) == "Y" else ""
        rows.append(RawEntry("button", fields))
    return (rows, skipped) if rows else None


def raw_keyboard(keyboard: payload.Keyboard) -> list[RawEntry]:
    """Builder data for a keyboard object."""
    loaded = _lenient_keyboard(keyboard.to_bitrix())
    return loaded[0] if loaded else []


def data_from_bitrix(
    *, message: str, attach: Any, keyboard: Any, url_preview: bool
) -> dict[str, str]:
    """Composer form data for a stored message (a template or a past delivery)."""
    data: dict[str, str] = {"message": message}
    if url_preview:
        data["url_preview"] = "on"
    if attach:
        loaded = _lenient_attach(attach)
        if loaded:
            data.update(attach_data(loaded[0], loaded[1]))
    if keyboard:
        loaded_keyboard = _lenient_keyboard(keyboard)
        if loaded_keyboard:
            data.update(keyboard_data(loaded_keyboard[0]))
    return data


# ---------------------------------------------------------------------------------------------
# The composer: everything on the page
# ---------------------------------------------------------------------------------------------

#: Keys of the composer's own data (drafts keep these and nothing else).
COMPOSE_KEYS = ("line", "user_id", "recipient_name", "message", "url_preview", "preview_width")
_CONTENT_KEY = re.compile(rf"(?:{ATTACH_PREFIX}|{KEYBOARD_PREFIX})-[a-z0-9_-]{{1,40}}")


def draft_data(data: Mapping[str, Any]) -> dict[str, str]:
    """The part of the posted form worth keeping as a draft."""
    kept: dict[str, str] = {}
    for key in list(data.keys())[:5000]:
        key = str(key)
        if key in COMPOSE_KEYS or _CONTENT_KEY.fullmatch(key):
            # Postgres cannot store NUL in JSON; a draft loses nothing anyone typed on purpose.
            kept[key] = _value(data, key).replace("\x00", "")
    return kept


def content_keys_removed(data: Mapping[str, Any]) -> dict[str, str]:
    """The posted form without its message content (line and recipient stay, previews on)."""
    kept = {
        key: _value(data, key)
        for key in ("line", "user_id", "recipient_name", "preview_width")
        if _value(data, key)
    }
    return {"url_preview": "on", **kept}


class Composer:
    """The whole composer form: message fields and both builders, from one POST."""

    def __init__(self, data: Mapping[str, Any] | None, *, portal: Portal) -> None:
        self.portal = portal
        if data is not None and not _value(data, "preview_width"):
            data = {**data, "preview_width": "desktop"}
        self.form = ComposeForm(data, portal=portal)
        source: Mapping[str, Any] = data or {}
        self.attach = AttachBuilder(source)
        self.keyboard = KeyboardBuilder(source)
        self.general: list[Issue] = []
        self.test_issues: list[Issue] = []
        # Built payloads by (builder, revision, partial): the preview and its checks both need
        # them; an action on a builder rebuilds its forms and so bumps its revision.
        self._built: dict[tuple[str, int, bool], dict[str, Any] | None] = {}

    @property
    def builders_valid(self) -> bool:
        return self.attach.all_valid and self.keyboard.all_valid

    def message_text(self) -> str:
        return str(self.form.value("message") or "")

    def url_preview(self) -> bool:
        return bool(self.form.value("url_preview"))

    def attach_value(self, *, partial: bool = False) -> dict[str, Any] | None:
        key = ("ATTACH", self.attach.revision, partial)
        if key not in self._built:
            attach = self.attach.partial_build() if partial else self.attach.build()
            self._built[key] = attach.to_bitrix() if attach else None
        return copy.deepcopy(self._built[key])

    def keyboard_value(self, *, partial: bool = False) -> dict[str, Any] | None:
        key = ("KEYBOARD", self.keyboard.revision, partial)
        if key not in self._built:
            keyboard = self.keyboard.partial_build() if partial else self.keyboard.build()
            self._built[key] = keyboard.to_bitrix() if keyboard else None
        return copy.deepcopy(self._built[key])

    def add_problem(self, path: str, issue: Issue, *, test: bool = False) -> None:
        """Show a refusal next to the input its payload path names."""
        head = _head(path)
        if head == "ATTACH":
            self.attach.add_problem(path, issue)
        elif head == "KEYBOARD":
            self.keyboard.add_problem(path, issue)
        elif head == "MESSAGE":
            self.form.add_issue("message", issue)
        elif head == "USER_ID":
            if test:
                self.test_issues.append(issue)
            else:
                self.form.add_issue("user_id", issue)
        elif head in ("CODE", "LINE"):
            self.form.add_issue("line", issue)
        else:
            self.general.append(issue)

    def check_ready(self, *, test: bool) -> bool:
        """Form-level checks before a send: valid inputs, a line and (unless a test) a recipient."""
        ok = self.form.is_valid() and self.builders_valid
        if self.form.is_valid():
            if self.form.cleaned_data.get("line") is None:
                self.form.add_issue(
                    "line", Issue(str(_("Choose the open line to send from.")), "CODE")
                )
                ok = False
            if not test and not self.form.cleaned_data.get("user_id"):
                self.form.add_issue(
                    "user_id", Issue(str(_("Choose who gets the message.")), "USER_ID_EMPTY")
                )
                ok = False
        return ok

    def check_content(
        self, *, sections: Sequence[str] = ("MESSAGE", "ATTACH", "KEYBOARD"), place: bool = True
    ) -> list[payload.Problem]:
        """The policy's problems with the text and builders (recipient and line aside).

        With `place`, each problem is also shown next to its input.
        """
        params: dict[str, Any] = {"MESSAGE": self.message_text()}
        attach = self.attach_value(partial=not place)
        keyboard = self.keyboard_value(partial=not place)
        if attach:
            params["ATTACH"] = attach
        if keyboard:
            params["KEYBOARD"] = keyboard
        problems = [p for p in payload.validate_params(params) if _head(p.field) in sections]
        if place:
            for problem in problems:
                self.add_problem(problem.field, Issue(str(problem.message), code=problem.code))
        return problems

    def describe(self, path: str) -> str:
        """Where a payload path points, in words: `Attachment · block 3 (Link) · Link`."""
        head = _head(path)
        if head == "MESSAGE":
            return str(_("Message"))
        if head in ("CODE", "LINE"):
            return str(_("Open line"))
        if head == "USER_ID":
            return str(_("Recipient"))
        if head == "ATTACH":
            return " · ".join([str(_("Attachment")), *self._describe_attach(path)])
        if head == "KEYBOARD":
            return " · ".join([str(_("Keyboard")), *self._describe_keyboard(path)])
        return path

    def _describe_attach(self, path: str) -> list[str]:
        match = re.match(
            r"ATTACH\.BLOCKS\[(\d+)\](?:\.[A-Z_]+)?(?:\[(\d+)\])?(?:\.([A-Z_]+))?", path
        )
        if not match:
            return [path[len("ATTACH.") :]] if path != "ATTACH" else []
        index = int(match[1])
        if index >= len(self.attach.blocks):
            return [str(_("block %(n)s") % {"n": index + 1})]
        block = self.attach.blocks[index]
        parts = [str(_("block %(n)s (%(kind)s)") % {"n": index + 1, "kind": block.label})]
        form: EntryForm = block
        if match[2] is not None and int(match[2]) < len(block.items):
            parts.append(f"{block.item_label} {int(match[2]) + 1}")
            form = block.items[int(match[2])]
        name = (match[3] or "").lower()
        if name in form.fields:
            parts.append(str(form.fields[name].label))
        return parts

    def _describe_keyboard(self, path: str) -> list[str]:
        match = re.match(r"KEYBOARD(?:\.BUTTONS)?\[(\d+)\](?:\.([A-Z_]+))?", path)
        if not match:
            return []
        parts = [str(_("button %(n)s") % {"n": int(match[1]) + 1})]
        name = (match[2] or "").lower()
        if name in ButtonForm.base_fields:
            parts.append(str(ButtonForm.base_fields[name].label))
        return parts


def _head(path: str) -> str:
    return path.split(".")[0].split("[")[0]
