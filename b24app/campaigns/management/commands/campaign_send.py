"""`manage.py campaign_send`: create and start a campaign from the command line.

For operators and scripts; it goes through the same services as the app's pages (the Celery
worker resolves the recipients and sends). A line the portal has not joined yet is joined first.
With `--wait` it shows progress and ends with one summary line of counts per state.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q

from b24app.campaigns import audience as aud
from b24app.campaigns import services
from b24app.campaigns.models import Campaign
from b24app.messaging import services as messaging
from b24app.messaging.models import Line
from b24app.portals.models import Portal

POLL_S = 1.0


def _json_file(path: str | None, flag: str) -> Any:
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(f"{flag}: cannot read JSON from {path}: {exc}") from exc


class Command(BaseCommand):
    help = "Send one message to many users of a portal as a campaign (through the Celery worker)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--portal", required=True, help="member_id or domain")
        parser.add_argument("--line", required=True, help="the open line's 32-character CODE")
        parser.add_argument("--message", required=True, help="text; {NAME} and {LAST_NAME} work")
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--users", help="user ids, comma-separated")
        who.add_argument("--department", type=int, help="a department id (with sub-departments)")
        who.add_argument("--all", action="store_true", help="all active employees")
        parser.add_argument("--attach-json", help="file with ATTACH (Bitrix structure)")
        parser.add_argument("--keyboard-json", help="file with KEYBOARD (Bitrix structure)")
        parser.add_argument("--name", default="", help="campaign name (default: first words)")
        parser.add_argument("--wait", action="store_true", help="show progress until it ends")
        parser.add_argument("--timeout", type=float, default=0.0, help="with --wait: give up (s)")

    def handle(self, *args: Any, **options: Any) -> None:
        key = str(options["portal"]).strip().lower()
        portal = Portal.objects.filter(Q(member_id=key) | Q(domain=key)).first()
        if portal is None:
            raise CommandError(f"no portal with member_id or domain {options['portal']!r}")
        if not portal.is_active:
            raise CommandError(f"portal {portal.domain} is {portal.status}; reconnect it first")
        if options["users"]:
            ids, bad = aud.parse_id_list(options["users"])
            if bad:
                raise CommandError(f"--users: not user ids: {', '.join(bad[:10])}")
            audience = aud.Audience("users", tuple(ids))
        elif options["department"]:
            audience = aud.Audience("departments", department_ids=(options["department"],))
        else:
            audience = aud.Audience("all")
        line = self._line(portal, options["line"])
        message: str = options["message"]
        try:
            campaign = services.campaign_create(
                portal=portal,
                line=line,
                name=options["name"] or " ".join(message.split()[:6]),
                message=message,
                audience=audience,
                attach=_json_file(options["attach_json"], "--attach-json"),
                keyboard=_json_file(options["keyboard_json"], "--keyboard-json"),
                author_name="campaign_send",
                time_zone=services.time_zone_default(portal=portal),
                autostart=True,
            )
        except services.CampaignError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(
            f"campaign {campaign.pk} created; it starts once its recipients are known"
        )
        if options["wait"]:
            self._wait(campaign, float(options["timeout"] or 0))

    def _line(self, portal: Portal, code: str) -> Line:
        line = Line.objects.filter(portal=portal, code=code).first()
        if line is not None and line.join_status == Line.JoinStatus.JOINED:
            return line
        self.stdout.write(f"joining line {code} on {portal.domain}")
        line = messaging.line_join(portal=portal, code=code)
        if line.join_status != Line.JoinStatus.JOINED:
            raise CommandError(f"the line could not be joined: {line.join_error}")
        return line

    def _wait(self, campaign: Campaign, timeout: float) -> None:
        started = time.monotonic()
        last = ""
        while True:
            campaign.refresh_from_db()
            line = self._progress_line(campaign)
            if line != last:
                self.stdout.write(line)
                last = line
            if campaign.status in (*Campaign.FINAL, Campaign.Status.BLOCKED) or (
                campaign.status == Campaign.Status.DRAFT
            ):
                break
            if campaign.status == Campaign.Status.READY and campaign.resolve_error:
                break
            if timeout and time.monotonic() - started > timeout:
                self.stdout.write("gave up waiting; the campaign goes on in the worker")
                break
            time.sleep(POLL_S)
        counts = services.campaign_counts(campaign=campaign)
        parts = ", ".join(f"{services.state_label(k)} {v}" for k, v in counts.items())
        summary = f"campaign {campaign.pk} {campaign.status}: {parts}"
        if campaign.status == Campaign.Status.BLOCKED:
            summary += (
                f" ({services.blocked_reason(campaign.blocked_code, campaign.blocked_detail)})"
            )
        elif campaign.resolve_error:
            summary += f" ({campaign.resolve_error})"
        self.stdout.write(summary)
        if campaign.status != Campaign.Status.COMPLETED:
            raise CommandError(f"campaign {campaign.pk} ended {campaign.status}")

    def _progress_line(self, campaign: Campaign) -> str:
        if campaign.status == Campaign.Status.RESOLVING:
            return f"finding recipients: {campaign.resolve_done}/{campaign.resolve_total or '?'}"
        progress = services.campaign_progress(campaign=campaign)
        eta = f", about {progress.eta_s:.0f} s left" if progress.eta_s else ""
        return (
            f"{campaign.status}: {progress.done}/{progress.total} done ({progress.percent}%), "
            f"{progress.rate:.1f} msg/s{eta}"
        )
