"""Forms that read what Bitrix24 POSTs: the installer/app page (spec §1.2) and events (§1.4)."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.utils.translation import gettext as _

_MEMBER_ID = re.compile(r"^[0-9a-zA-Z]{8,64}$")


class FramePostForm(forms.Form):
    """The fields Bitrix24 sends when it opens the app page (query string and body merged).

    SERVER_ENDPOINT, APPLICATION_TOKEN and APPLICATION_SCOPE are optional: only current portals
    send them (spec §1.2, version caveat).
    """

    DOMAIN = forms.CharField(max_length=255)
    PROTOCOL = forms.ChoiceField(choices=[("1", "https"), ("0", "http")], required=False)
    LANG = forms.CharField(max_length=10, required=False)
    APP_SID = forms.CharField(max_length=100, required=False)
    AUTH_ID = forms.CharField(max_length=500)
    AUTH_EXPIRES = forms.IntegerField(required=False, min_value=0)
    REFRESH_ID = forms.CharField(max_length=500, required=False)
    SERVER_ENDPOINT = forms.CharField(max_length=300, required=False)
    APPLICATION_TOKEN = forms.CharField(max_length=200, required=False)
    APPLICATION_SCOPE = forms.CharField(max_length=500, required=False)
    member_id = forms.CharField(max_length=64)
    status = forms.CharField(max_length=2, required=False)
    PLACEMENT = forms.CharField(max_length=100, required=False)
    PLACEMENT_OPTIONS = forms.CharField(required=False, max_length=10_000)

    def clean_member_id(self) -> str:
        value: str = self.cleaned_data["member_id"]
        if not _MEMBER_ID.match(value):
            raise forms.ValidationError(_("member_id is malformed"))
        return value

    def clean_DOMAIN(self) -> str:  # noqa: N802 - Bitrix's field name
        value: str = self.cleaned_data["DOMAIN"].strip().lower()
        if not re.match(r"^[a-z0-9.-]+(:\d{1,5})?$", value):
            raise forms.ValidationError(_("DOMAIN is malformed"))
        return value

    @property
    def https(self) -> bool:
        return self.cleaned_data.get("PROTOCOL") != "0"

    def error_text(self) -> str:
        return "; ".join(
            f"{field}: {' '.join(map(str, errs))}" for field, errs in self.errors.items()
        )


class InstallForm(FramePostForm):
    """The installer POST additionally needs the refresh token the app keeps."""

    REFRESH_ID = forms.CharField(max_length=500)


def merged_frame_data(query: Any, body: Any) -> dict[str, str]:
    """Bitrix puts DOMAIN/PROTOCOL/LANG/APP_SID in the query string and the rest in the body."""
    data = {key: query.get(key) for key in query}
    data.update({key: body.get(key) for key in body})
    return data


def nested(body: Any, prefix: str) -> dict[str, str]:
    """Pick PHP-style nested form fields: nested(POST, "auth") reads `auth[member_id]` etc."""
    pattern = re.compile(rf"^{re.escape(prefix)}\[([A-Za-z0-9_]+)\]$")
    out: dict[str, str] = {}
    for key in body:
        match = pattern.match(key)
        if match:
            out[match.group(1)] = body.get(key)
    return out
