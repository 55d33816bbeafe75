"""Forms of the portal settings page (admins only)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from b24app.portals.models import Portal

PLANS = {
    "standard": (2.0, 50),
    "enterprise": (5.0, 250),
}


class PortalSettingsForm(forms.Form):
    """NFR licence and the plan's REST limits (spec §4.1)."""

    nfr = forms.BooleanField(
        required=False,
        label=_("Partner NFR licence (no weekly limit per recipient)"),
        help_text=_(
            "Only tick this if the portal really has an NFR licence: Bitrix24 refuses "
            "a second message to the same person within 7 days otherwise."
        ),
    )
    plan = forms.ChoiceField(
        label=_("Bitrix24 plan"),
        choices=[
            ("standard", _("Any plan but Enterprise: 2 requests/s, bursts of 50")),
            ("enterprise", _("Enterprise: 5 requests/s, bursts of 250")),
            ("custom", _("Custom limits")),
        ],
    )
    rate = forms.FloatField(
        label=_("Requests per second"), min_value=0.1, max_value=50, required=False
    )
    burst = forms.IntegerField(label=_("Burst"), min_value=1, max_value=1000, required=False)

    @classmethod
    def for_portal(cls, portal: Portal) -> PortalSettingsForm:
        rate, burst = portal.rate, portal.burst
        plan = next((name for name, pair in PLANS.items() if pair == (rate, burst)), None)
        if rate is None and burst is None:
            plan = "standard"
        return cls(
            initial={"nfr": portal.nfr, "plan": plan or "custom", "rate": rate, "burst": burst}
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("plan") == "custom":
            for field in ("rate", "burst"):
                if data.get(field) in (None, ""):
                    self.add_error(field, _("Required for custom limits."))
        elif data.get("plan") in PLANS:
            data["rate"], data["burst"] = PLANS[data["plan"]]
        return data
