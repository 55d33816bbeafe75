"""The admin status page's details: lines, recent failures and blocked campaigns.

The page itself belongs to portals (connection and pacing); these details need messaging and
campaigns, which portals may not import, so this fragment lives here and the page loads it.
"""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from b24app.campaigns.models import Campaign
from b24app.messaging.models import Delivery, Line
from b24app.portals.frame import FrameRequest, frame_view

RECENT_FAILURES = 10


@frame_view(admin=True)
@require_GET
def status_details(request: FrameRequest) -> HttpResponse:
    portal = request.frame.portal
    failures = (
        Delivery.objects.filter(
            portal=portal,
            status__in=[Delivery.Status.REJECTED, Delivery.Status.UNKNOWN, Delivery.Status.LIMITED],
        )
        .select_related("line")
        .order_by("-created_at")[:RECENT_FAILURES]
    )
    return render(
        request,
        "campaigns/status_details.html",
        {
            "frame": request.frame,
            "lines": Line.objects.filter(portal=portal),
            "failures": failures,
            "blocked": Campaign.objects.filter(portal=portal, status=Campaign.Status.BLOCKED),
        },
    )
