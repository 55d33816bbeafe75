"""Campaign pages inside the Bitrix24 frame: list, new, detail with live progress, report.

Every page is a `frame_view`; each view reads its input through a form and calls one service.
Campaigns are for administrators until an administrator allows other users or departments
(settings page). The CSV download is the one view without the frame token: a browser download
cannot carry a header, so the frame hands out a single-use, 60-second token for it instead.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from b24app.bitrix import errors
from b24app.campaigns import audience as aud
from b24app.campaigns import forms, services
from b24app.campaigns.models import Campaign, Exclusion, Recipient
from b24app.messaging import render as chat
from b24app.messaging.models import Delivery
from b24app.portals import error_texts
from b24app.portals.frame import FrameRequest, frame_view
from b24app.portals.middleware import body_limit
from b24app.portals.services import PortalError

REPORT_PAGE = 100
# The fields the department picker fills in, and the form each belongs to (for its label).
PICKER_FIELDS: dict[str, type[forms.CampaignForm | forms.SettingsForm]] = {
    "department_ids": forms.CampaignForm,
    "allowed_department_ids": forms.SettingsForm,
}


def _page(request: FrameRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    """A whole page, or just its `app-page` partial for htmx navigation inside the frame."""
    name = f"{template}#app-page" if request.htmx else template
    return _partial(request, name, context)


def _partial(request: FrameRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    return render(
        request,
        template,
        {"frame": request.frame, "frame_token": request.frame.token(), **context},
    )


def _allowed(request: FrameRequest) -> bool:
    frame = request.frame
    return services.campaign_allowed(portal=frame.portal, user_id=frame.user_id, admin=frame.admin)


def _refused(request: FrameRequest) -> HttpResponse:
    response = _page(request, "campaigns/refused.html", {})
    response.status_code = 403
    return response


def _campaign(request: FrameRequest, pk: int) -> Campaign:
    return get_object_or_404(
        Campaign.objects.select_related("line", "portal"), pk=pk, portal=request.frame.portal
    )


def campaign_page(view: Any) -> Any:
    """`frame_view` plus the campaign permission."""

    @frame_view
    def wrapped(request: FrameRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not _allowed(request):
            return _refused(request)
        response: HttpResponse = view(request, *args, **kwargs)
        return response

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


@campaign_page
def campaign_list(request: FrameRequest) -> HttpResponse:
    """Every campaign of the portal, newest first, with its counts (history)."""
    campaigns = list(
        Campaign.objects.filter(portal=request.frame.portal).select_related("line")[:200]
    )
    counts = services.campaigns_counts(campaigns=campaigns)
    rows = [(c, counts[c.pk]) for c in campaigns]
    return _page(request, "campaigns/list.html", {"rows": rows})


@body_limit(aud.CSV_BODY_LIMIT)  # outermost: the middleware reads it from the resolved view
@campaign_page
def campaign_new(request: FrameRequest) -> HttpResponse:
    """The new-campaign form; a valid POST creates it and starts finding its recipients."""
    portal = request.frame.portal
    if request.method == "POST":
        form = forms.CampaignForm(request.POST, request.FILES, portal=portal)
        if form.is_valid():
            data = form.cleaned_data
            try:
                campaign = services.campaign_create(
                    portal=portal,
                    line=data["line"],
                    name=data["name"],
                    message=data["message"],
                    audience=form.audience_value(),
                    attach=data.get("attach"),
                    keyboard=data.get("keyboard"),
                    url_preview=bool(data.get("url_preview")),
                    author_user_id=request.frame.user_id,
                    author_name=request.frame.user_name,
                    scheduled_at=form.scheduled_value(),
                    window=form.window_value(),
                    time_zone=data["time_zone"],
                )
            except services.CampaignError as exc:
                target = exc.field if exc.field in form.fields else None
                if exc.field.startswith(("ATTACH", "KEYBOARD", "MESSAGE")):
                    target = exc.field.split(".")[0].split("[")[0].lower()
                form.add_error(target if target in form.fields else None, exc.message)
            else:
                return _detail(request, campaign, created=True)
    else:
        zone = services.time_zone_default(portal=portal)
        initial = {"time_zone": zone or settings.TIME_ZONE, "url_preview": True}
        form = forms.CampaignForm(initial=initial, portal=portal, zone_known=bool(zone))
    return _page(request, "campaigns/new.html", {"form": form})


def _detail(request: FrameRequest, campaign: Campaign, **extra: Any) -> HttpResponse:
    return _page(request, "campaigns/detail.html", _detail_context(campaign, **extra))


def _detail_context(campaign: Campaign, **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"campaign": campaign, **extra}
    if campaign.status in (Campaign.Status.READY, Campaign.Status.DRAFT):
        summary = services.campaign_summary(campaign=campaign, limit=0)
        context["summary"] = summary
        if summary.skipped_total:
            context["skipped_page"] = services.campaign_skipped(campaign=campaign)
    elif campaign.status != Campaign.Status.RESOLVING:
        progress = services.campaign_progress(campaign=campaign)
        context["progress"] = progress
        context["count_rows"] = [
            (state, services.state_label(state), n) for state, n in progress.counts.items()
        ]
    if campaign.status == Campaign.Status.BLOCKED:
        context["blocked_reason"] = services.blocked_reason(
            campaign.blocked_code, campaign.blocked_detail
        )
    context["polling"] = campaign.status in (
        Campaign.Status.RESOLVING,
        Campaign.Status.SCHEDULED,
        Campaign.Status.RUNNING,
    )
    return context


def _preview(campaign: Campaign, user_id: int | None = None) -> dict[str, Any]:
    recipient, text = services.campaign_preview(campaign=campaign, user_id=user_id)
    html = chat.render_message(message=text, attach=campaign.attach, keyboard=campaign.keyboard)
    return {"preview": text, "preview_html": html, "preview_recipient": recipient}


@campaign_page
def campaign_detail(request: FrameRequest, pk: int) -> HttpResponse:
    """One campaign: the pre-start summary, or live progress, and its actions."""
    campaign = _campaign(request, pk)
    return _detail(request, campaign, **_preview(campaign))


@campaign_page
@require_GET
def campaign_state(request: FrameRequest, pk: int) -> HttpResponse:
    """The polled part of the detail page (htmx every 2 s while the campaign moves).

    The page polls with `resolving=1` while the recipients are being found; the answer that
    first sees them found also carries the preview out of band, since the page drew it when
    nobody was found yet (and nothing else would redraw it).
    """
    campaign = _campaign(request, pk)
    response = _partial(request, "campaigns/detail.html#state", _detail_context(campaign))
    if request.GET.get("resolving") and campaign.status != Campaign.Status.RESOLVING:
        context = {"campaign": campaign, "oob": True, **_preview(campaign)}
        response.write(_partial(request, "campaigns/detail.html#preview", context).content)
    return response


@campaign_page
@require_GET
def campaign_departments(request: FrameRequest) -> HttpResponse:
    """The department picker: the portal's departments (`department.get`) as a tree of
    checkboxes, in place of the field's ID input (which stays for IDs not in the tree)."""
    name = request.GET.get("field", "")
    form_class = PICKER_FIELDS.get(name)
    if form_class is None:
        raise Http404("no such picker")
    if name == "allowed_department_ids" and not request.frame.admin:
        return _refused(request)
    chosen, _bad = aud.parse_id_list(", ".join(request.GET.getlist(name)))
    context: dict[str, Any] = {
        "name": name,
        "label": form_class.base_fields[name].label,
        "selected": set(chosen),
        "nodes": [],
        "others": ", ".join(str(i) for i in chosen),
    }
    try:
        # Read once for this request; the tree is not kept, so it is always the current one.
        departments = services.departments_read(portal=request.frame.portal)
    except (errors.BitrixError, PortalError) as exc:
        code = getattr(exc, "code", "")
        context["error"] = _(
            "Bitrix24 did not list its departments: %(reason)s Enter department IDs instead."
        ) % {"reason": error_texts.error_label(code)}
    else:
        known = {dept.id for dept in departments}
        context["nodes"] = aud.department_tree(
            (dept.id, dept.name, dept.parent, dept.sort) for dept in departments
        )
        context["others"] = ", ".join(str(i) for i in chosen if i not in known)
    return _partial(request, "campaigns/_departments.html", context)


@campaign_page
@require_GET
def campaign_skipped(request: FrameRequest, pk: int) -> HttpResponse:
    """One page of who is skipped before the start, and why (every skipped user is listed)."""
    campaign = _campaign(request, pk)
    page = services.campaign_skipped(campaign=campaign, page=request.GET.get("page"))
    context = {"campaign": campaign, "skipped_page": page}
    return _partial(request, "campaigns/detail.html#skipped", context)


@campaign_page
@require_GET
def campaign_preview(request: FrameRequest, pk: int) -> HttpResponse:
    """The personalised message as one chosen recipient would receive it."""
    campaign = _campaign(request, pk)
    raw = request.GET.get("user_id", "").strip()
    user_id = int(raw) if raw.isdigit() else None
    context: dict[str, Any] = {"campaign": campaign, **_preview(campaign, user_id)}
    if user_id is not None and context["preview_recipient"] is None:
        context["preview_error"] = _("No recipient with this user ID in the campaign.")
    return _partial(request, "campaigns/detail.html#preview", context)


@campaign_page
@require_POST
def campaign_action(request: FrameRequest, pk: int) -> HttpResponse:
    """Start, pause, resume, cancel, duplicate, or find the recipients again."""
    campaign = _campaign(request, pk)
    action = request.POST.get("action", "")
    user_id, name = request.frame.user_id, request.frame.user_name
    try:
        if action == "start":
            campaign = services.campaign_start(
                campaign=campaign, actor_user_id=user_id, actor_name=name
            )
        elif action == "pause":
            campaign = services.campaign_pause(
                campaign=campaign, actor_user_id=user_id, actor_name=name
            )
        elif action == "resume":
            campaign = services.campaign_resume(
                campaign=campaign, actor_user_id=user_id, actor_name=name
            )
        elif action == "cancel":
            campaign = services.campaign_cancel(
                campaign=campaign, actor_user_id=user_id, actor_name=name
            )
        elif action == "resolve":
            services.campaign_resolve_again(campaign=campaign)
            campaign.refresh_from_db()
        elif action == "duplicate":
            copy = services.campaign_duplicate(
                campaign=campaign,
                author_user_id=request.frame.user_id,
                author_name=request.frame.user_name,
            )
            return _detail(request, copy, created=True)
        else:
            raise Http404("unknown action")
    except services.CampaignError as exc:
        campaign.refresh_from_db()
        return _detail(request, campaign, action_error=exc.message)
    return _detail(request, campaign, **_preview(campaign))


def _report_context(request: FrameRequest, campaign: Campaign) -> dict[str, Any]:
    states = [(s, services.state_label(s)) for s in services.report_states(campaign.status)]
    form = forms.ReportFilterForm(request.GET or None, states=states)
    state = form.cleaned_data.get("state", "") if form.is_valid() else ""
    page_number = (form.cleaned_data.get("page") if form.is_valid() else None) or 1
    paginator = Paginator(services.report_rows(campaign=campaign, state=state), REPORT_PAGE)
    page = paginator.get_page(page_number)
    rows = []
    for recipient in page.object_list:
        current = services.recipient_state(recipient, campaign)
        label = services.state_label(current)
        rows.append((recipient, current, label, recipient.get_skip_reason_display()))
    counts = services.campaign_counts(campaign=campaign)
    return {
        "campaign": campaign,
        "state_options": [(value, label, counts.get(value, 0)) for value, label in states],
        "state": state,
        "page": page,
        "rows": rows,
        "counts": counts,
        "unknown": Delivery.Status.UNKNOWN,
    }


@campaign_page
@require_GET
def campaign_report(request: FrameRequest, pk: int) -> HttpResponse:
    """Per-recipient outcome, filtered by state, 100 per page."""
    campaign = _campaign(request, pk)
    context = _report_context(request, campaign)
    if request.htmx and request.htmx.target == "report-table":
        return _partial(request, "campaigns/report.html#report-table", context)
    return _page(request, "campaigns/report.html", context)


@campaign_page
@require_POST
def campaign_recipients(request: FrameRequest, pk: int) -> HttpResponse:
    """ "Resend" or "Mark as delivered" for recipients whose outcome is unknown."""
    campaign = _campaign(request, pk)
    allowed = list(
        Recipient.objects.filter(
            campaign=campaign, delivery__status=Delivery.Status.UNKNOWN
        ).values_list("pk", flat=True)
    )
    form = forms.RecipientActionForm(request.POST, allowed=allowed)
    message = _("Choose recipients whose outcome is unknown.")
    error = ""
    if form.is_valid():
        ids = form.cleaned_data["recipients"]
        if form.cleaned_data["action"] == "resend":
            try:
                count = services.recipients_resend(
                    campaign=campaign,
                    recipient_ids=ids,
                    actor_user_id=request.frame.user_id,
                    actor_name=request.frame.user_name,
                )
            except services.CampaignError as exc:
                error = exc.message
            else:
                message = ngettext(
                    "%(n)d message will be sent again.",
                    "%(n)d messages will be sent again.",
                    count,
                ) % {"n": count}
        else:
            count = services.recipients_mark_delivered(
                campaign=campaign,
                recipient_ids=ids,
                by_user_id=request.frame.user_id,
                by_user_name=request.frame.user_name,
            )
            message = ngettext(
                "%(n)d message marked as delivered.", "%(n)d messages marked as delivered.", count
            ) % {"n": count}
    campaign.refresh_from_db()
    context = _report_context(request, campaign)
    if error:
        context["error"] = error
    else:
        context["notice"] = message
    return _page(request, "campaigns/report.html", context)


@campaign_page
@require_POST
def campaign_export(request: FrameRequest, pk: int) -> HttpResponse:
    """Hand the browser a single-use download link for the report as CSV."""
    campaign = _campaign(request, pk)
    state = request.POST.get("state", "")
    token = services.download_issue(
        campaign=campaign, state=state if state in services.report_states(campaign.status) else ""
    )
    return HttpResponseClientRedirect(reverse("campaigns:download", args=[token]))


class _Echo:
    def write(self, value: str) -> str:
        return value


@require_GET
def campaign_download(request: HttpRequest, token: str) -> HttpResponse | StreamingHttpResponse:
    # No frame token here: a download is a plain navigation that cannot carry the header. The
    # single-use, 60-second token (issued by a frame view for this campaign) is the proof.
    grant = services.download_consume(token=token)
    if grant is None:
        return HttpResponse(
            _("This download link has expired; export again."),
            status=410,
            content_type="text/plain; charset=utf-8",
        )
    campaign = grant.campaign
    writer = csv.writer(_Echo())

    def rows() -> Iterator[str]:
        yield "\ufeff"  # lets spreadsheet apps read UTF-8 names
        for row in services.report_csv_rows(campaign=campaign, state=grant.status_filter):
            yield writer.writerow(row)

    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response


def _settings(request: FrameRequest) -> HttpResponse:
    """Administrators: who may run campaigns, the time zone, and the exclusion list."""
    portal = request.frame.portal
    current = services.settings_for(portal)
    notice = ""
    settings_form = forms.SettingsForm(
        initial={
            "allowed_user_ids": ", ".join(str(i) for i in current.allowed_user_ids),
            "allowed_department_ids": ", ".join(str(i) for i in current.allowed_department_ids),
            "time_zone": current.time_zone,
        }
    )
    exclusion_form = forms.ExclusionForm()
    if request.method == "POST" and request.POST.get("form") == "settings":
        settings_form = forms.SettingsForm(request.POST)
        if settings_form.is_valid():
            data = settings_form.cleaned_data
            current = services.settings_update(
                portal=portal,
                allowed_user_ids=data["allowed_user_ids"],
                allowed_department_ids=data["allowed_department_ids"],
                time_zone=data["time_zone"],
                single_calls=False if request.POST.get("retry_batch") else None,
                actor_user_id=request.frame.user_id,
                actor_name=request.frame.user_name,
            )
            notice = _("Settings saved.")
    elif request.method == "POST" and request.POST.get("form") == "exclusions":
        exclusion_form = forms.ExclusionForm(request.POST)
        if exclusion_form.is_valid():
            ids = exclusion_form.cleaned_data["user_ids"]
            if exclusion_form.cleaned_data.get("remove"):
                count = services.exclusion_remove(
                    portal=portal,
                    user_ids=ids,
                    actor_user_id=request.frame.user_id,
                    actor_name=request.frame.user_name,
                )
                notice = ngettext(
                    "%(n)d user taken off the exclusion list.",
                    "%(n)d users taken off the exclusion list.",
                    count,
                ) % {"n": count}
            else:
                count = services.exclusion_add(
                    portal=portal,
                    user_ids=ids,
                    note=exclusion_form.cleaned_data.get("note") or "",
                    created_by=request.frame.user_id,
                    actor_name=request.frame.user_name,
                )
                notice = ngettext(
                    "%(n)d user added to the exclusion list.",
                    "%(n)d users added to the exclusion list.",
                    count,
                ) % {"n": count}
            exclusion_form = forms.ExclusionForm()
    exclusions = Exclusion.objects.filter(portal=portal)[:500]
    # What an empty zone stands for (one cached `profile` call per portal and hour).
    settings_form.fields["time_zone"].widget.attrs["placeholder"] = services.portal_time_zone(
        portal=portal
    )
    return _page(
        request,
        "campaigns/settings.html",
        {
            "settings_form": settings_form,
            "exclusion_form": exclusion_form,
            "exclusions": exclusions,
            "current": current,
            "notice": notice,
        },
    )


campaign_settings: Callable[..., HttpResponse] = frame_view(admin=True)(_settings)
