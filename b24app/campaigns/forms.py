"""Forms of the campaign pages: the new-campaign form, the report filter, the settings form."""

from __future__ import annotations

import json
import zoneinfo
from datetime import datetime, time
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from b24app.campaigns import audience as aud
from b24app.messaging.models import Line
from b24app.portals.models import Portal

AUDIENCE_CHOICES = [
    ("users", _("Chosen users")),
    ("departments", _("Departments")),
    ("all", _("All active employees")),
    ("csv", _("Upload a CSV file of user IDs")),
]


def _json_field(value: str, label: str) -> Any:
    text = value.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise forms.ValidationError(
            _("%(label)s is not valid JSON: %(error)s"), params={"label": label, "error": exc}
        ) from exc


class IdListInput(forms.TextInput):
    """A text input of IDs that also takes the picker's checkboxes of the same name.

    Without script the text is all there is; with the department picker loaded, each ticked
    department posts its own value under the field's name, and all of them are read together.
    """

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        getlist = getattr(data, "getlist", None)
        if getlist is None:
            return super().value_from_datadict(data, files, name)
        return ", ".join(part.strip() for part in getlist(name) if part.strip())


def _ids_field(label: Any, **kwargs: Any) -> forms.CharField:
    return forms.CharField(label=label, required=False, widget=IdListInput, **kwargs)


def _valid_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise forms.ValidationError(_("Unknown time zone (use e.g. Europe/Berlin).")) from exc
    return name


class CampaignForm(forms.Form):
    """Everything a new campaign needs: message snapshot, audience, schedule."""

    name = forms.CharField(label=_("Name"), max_length=200)
    line = forms.ModelChoiceField(label=_("Open line"), queryset=Line.objects.none())
    message = forms.CharField(
        label=_("Message"),
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=_("{NAME} and {LAST_NAME} are replaced for each recipient."),
    )
    attach = forms.CharField(
        label=_("ATTACH (JSON, optional)"), required=False, widget=forms.Textarea({"rows": 3})
    )
    keyboard = forms.CharField(
        label=_("KEYBOARD (JSON, optional)"), required=False, widget=forms.Textarea({"rows": 3})
    )
    url_preview = forms.BooleanField(label=_("Link previews"), required=False, initial=True)
    audience = forms.ChoiceField(
        label=_("Recipients"), choices=AUDIENCE_CHOICES, widget=forms.RadioSelect, initial="users"
    )
    user_ids = _ids_field(_("User IDs"), help_text=_("e.g. 1, 7, 12"))
    department_ids = _ids_field(_("Department IDs"))
    subdepartments = forms.BooleanField(
        label=_("Include sub-departments"), required=False, initial=True
    )
    include_extranet = forms.BooleanField(label=_("Also extranet users"), required=False)
    include_email = forms.BooleanField(label=_("Also e-mail users"), required=False)
    csv_file = forms.FileField(label=_("CSV file"), required=False)
    scheduled_at = forms.DateTimeField(
        label=_("Start at (optional)"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    window_start = forms.TimeField(
        label=_("Send only from"), required=False, widget=forms.TimeInput({"type": "time"})
    )
    window_end = forms.TimeField(
        label=_("until"), required=False, widget=forms.TimeInput({"type": "time"})
    )
    time_zone = forms.CharField(
        label=_("Time zone"),
        max_length=64,
        help_text=_("Of the start time and the sending window, e.g. Europe/Moscow."),
    )

    def __init__(self, *args: Any, portal: Portal, zone_known: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not zone_known:
            # Neither the settings nor Bitrix24 named a zone: campaigns.js puts the browser's
            # in (the server's default stays for a browser without script).
            self.fields["time_zone"].widget.attrs["data-browser-zone"] = "1"
        line_field = self.fields["line"]
        assert isinstance(line_field, forms.ModelChoiceField)
        line_field.queryset = Line.objects.filter(portal=portal)
        self.csv_errors: list[tuple[int, str, str]] = []
        self.csv_duplicates = 0

    def clean_attach(self) -> Any:
        return _json_field(self.cleaned_data.get("attach") or "", "ATTACH")

    def clean_keyboard(self) -> Any:
        return _json_field(self.cleaned_data.get("keyboard") or "", "KEYBOARD")

    def clean_time_zone(self) -> str:
        return _valid_zone(self.cleaned_data["time_zone"])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("audience")
        if kind == "users":
            ids, bad = aud.parse_id_list(data.get("user_ids") or "")
            if bad:
                self.add_error(
                    "user_ids", _("Not user IDs: %(bad)s") % {"bad": ", ".join(bad[:10])}
                )
            elif not ids:
                self.add_error("user_ids", _("Name at least one user ID."))
            data["ids"] = ids
        elif kind == "departments":
            ids, bad = aud.parse_id_list(data.get("department_ids") or "")
            if bad or not ids:
                self.add_error("department_ids", _("Name at least one department ID."))
            data["departments"] = ids
        elif kind == "csv":
            upload = data.get("csv_file")
            if upload is None:
                self.add_error("csv_file", _("Choose a CSV file."))
            elif upload.size > aud.CSV_MAX_BYTES:
                self.add_error(
                    "csv_file",
                    _("The file is larger than %(n)d KB.") % {"n": aud.CSV_MAX_BYTES // 1000},
                )
            else:
                parsed = aud.csv_parse(upload.read())
                self.csv_errors = parsed.errors
                self.csv_duplicates = parsed.duplicates
                if parsed.errors:
                    self.add_error(
                        "csv_file",
                        ngettext(
                            "%(n)d line of the file is not a user ID; see the list below.",
                            "%(n)d lines of the file are not user IDs; see the list below.",
                            len(parsed.errors),
                        )
                        % {"n": len(parsed.errors)},
                    )
                data["ids"] = parsed.ids
        start, end = data.get("window_start"), data.get("window_end")
        if (start is None) != (end is None):
            self.add_error("window_end", _("Give both ends of the sending window, or neither."))
        when = data.get("scheduled_at")
        zone = data.get("time_zone")
        if when is not None and zone:
            # The browser sends a wall-clock time; it means that time in the chosen zone.
            local = when.replace(tzinfo=None) if timezone.is_aware(when) else when
            aware = local.replace(tzinfo=zoneinfo.ZoneInfo(zone))
            if aware <= timezone.now():
                self.add_error("scheduled_at", _("Choose a moment in the future."))
            data["scheduled_at"] = aware
        return data

    def audience_value(self) -> aud.Audience:
        data = self.cleaned_data
        kind = data["audience"]
        if kind in ("users", "csv"):
            return aud.Audience(kind, tuple(data.get("ids") or ()))
        if kind == "departments":
            return aud.Audience(
                "departments",
                department_ids=tuple(data.get("departments") or ()),
                subdepartments=bool(data.get("subdepartments")),
            )
        types = ["employee"]
        if data.get("include_extranet"):
            types.append("extranet")
        if data.get("include_email"):
            types.append("email")
        return aud.Audience("all", user_types=tuple(types))

    def window_value(self) -> tuple[time, time] | None:
        start, end = self.cleaned_data.get("window_start"), self.cleaned_data.get("window_end")
        return (start, end) if start is not None and end is not None else None

    def scheduled_value(self) -> datetime | None:
        value: datetime | None = self.cleaned_data.get("scheduled_at")
        return value


class ReportFilterForm(forms.Form):
    state = forms.ChoiceField(required=False)
    page = forms.IntegerField(required=False, min_value=1)

    def __init__(self, *args: Any, states: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["state"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", _("all")), *states]


class RecipientActionForm(forms.Form):
    action = forms.ChoiceField(choices=[("resend", "resend"), ("mark", "mark")])
    recipients = forms.TypedMultipleChoiceField(coerce=int, choices=[], required=True)

    def __init__(self, *args: Any, allowed: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["recipients"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(pk, str(pk)) for pk in allowed]


class SettingsForm(forms.Form):
    allowed_user_ids = _ids_field(_("Users who may run campaigns (IDs)"))
    allowed_department_ids = _ids_field(_("Departments whose members may run campaigns (IDs)"))
    time_zone = forms.CharField(
        label=_("Time zone of sending windows"),
        max_length=64,
        required=False,
        help_text=_("What new campaigns suggest. Empty: the time zone of this Bitrix24."),
    )

    def clean_time_zone(self) -> str:
        name = (self.cleaned_data.get("time_zone") or "").strip()
        return _valid_zone(name) if name else ""

    def clean_allowed_user_ids(self) -> list[int]:
        ids, bad = aud.parse_id_list(self.cleaned_data.get("allowed_user_ids") or "")
        if bad:
            raise forms.ValidationError(_("Not user IDs: %(bad)s"), params={"bad": ", ".join(bad)})
        return ids

    def clean_allowed_department_ids(self) -> list[int]:
        ids, bad = aud.parse_id_list(self.cleaned_data.get("allowed_department_ids") or "")
        if bad:
            raise forms.ValidationError(
                _("Not department IDs: %(bad)s"), params={"bad": ", ".join(bad)}
            )
        return ids


class ExclusionForm(forms.Form):
    user_ids = forms.CharField(label=_("User IDs"))
    note = forms.CharField(label=_("Note"), required=False, max_length=200)
    remove = forms.BooleanField(required=False)

    def clean_user_ids(self) -> list[int]:
        ids, bad = aud.parse_id_list(self.cleaned_data.get("user_ids") or "")
        if bad or not ids:
            raise forms.ValidationError(_("Give user IDs, e.g. 7, 12."))
        return ids
