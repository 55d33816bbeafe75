"""`hostile_input`: forged Bitrix24 requests, other portals' ids, XSS payloads, oversized bodies and
random forms against the app, in this process through Django's test client.

Every probe counts as `tried`, and as `held` when the app answered as it must:

- `forged_install`, `forged_events`, `forged_entry`, `forged_frame_token`: refused (4xx), nothing
  stored or changed (portals, their tokens, status), no frame token handed out;
- `other_portal_ids`: portal A's frame token naming portal B's campaign, delivery, template or
  line gets a 4xx, and never a byte of B's data (a unique marker in all of B's rows);
- `xss_forms`: at least 50 payloads in every text field of the composer and campaign forms (each
  request carries a different payload in every field; over the run every field sees each
  payload), and `xss_stored`: the same payloads stored in every text column a page shows; no
  response may contain markup they brought in (`injected`), and no 500;
- `huge_ids`: ids past every integer column in id fields and URLs: never a 500;
- `oversized`: bodies over B24_BODY_LIMIT, with and without Content-Length, answer 413;
- `fuzz`: hypothesis-generated posts, at least `examples` per form: never a 500 or an injection.

Needs a running sandbox with two portals (the OAuth checks of install, events and entry really go
to its hub over loopback).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

MARK = "b24xss"

# Each carries MARK where it would execute, so `injected` can tell our markup from theirs.
XSS_PAYLOADS: tuple[str, ...] = (
    f"<script>alert('{MARK}')</script>",
    f'"><script>alert("{MARK}")</script>',
    f"'><script>alert('{MARK}')</script>",
    f"</textarea><script>alert('{MARK}')</script>",
    f"</title><script>alert('{MARK}')</script>",
    f"</script><script>alert('{MARK}')</script>",
    f"<img src=x onerror=alert('{MARK}')>",
    f'<img src="x" onerror="alert(\'{MARK}\')">',
    f"<svg onload=alert('{MARK}')>",
    f"<svg><script>alert('{MARK}')</script></svg>",
    f"<body onload=alert('{MARK}')>",
    f"<iframe src=\"javascript:alert('{MARK}')\"></iframe>",
    f"<iframe srcdoc=\"<script>alert('{MARK}')</script>\"></iframe>",
    f"<a href=\"javascript:alert('{MARK}')\">x</a>",
    f"javascript:alert('{MARK}')",
    f"JaVaScRiPt:alert('{MARK}')",
    f" javascript:alert('{MARK}')",
    f"javascript&colon;alert('{MARK}')",
    f'vbscript:msgbox("{MARK}")',
    f"data:text/html,<script>alert('{MARK}')</script>",
    f"data:text/html;base64,PHNjcmlwdD5hbGVydCgne01BUkt9Jyk8L3NjcmlwdD4={MARK}",
    f"\" onmouseover=\"alert('{MARK}')",
    f"' onfocus='alert(\"{MARK}\")' autofocus='",
    f"\" autofocus onfocus=\"alert('{MARK}')",
    f"<input onfocus=alert('{MARK}') autofocus>",
    f"<details open ontoggle=alert('{MARK}')>",
    f"<video><source onerror=alert('{MARK}')></video>",
    f"<audio src=x onerror=alert('{MARK}')>",
    f"<marquee onstart=alert('{MARK}')>",
    f"<object data=\"javascript:alert('{MARK}')\"></object>",
    f"<embed src=\"javascript:alert('{MARK}')\">",
    f"<base href=\"javascript:alert('{MARK}')//\">",
    f'<meta http-equiv="refresh" content="0;url=javascript:alert(\'{MARK}\')">',
    f"<link rel=stylesheet href=\"javascript:alert('{MARK}')\">",
    f"<style>@import 'javascript:alert(\"{MARK}\")';</style>",
    f"<div style=\"background:url(javascript:alert('{MARK}'))\">",
    f"<div style=\"width:expression(alert('{MARK}'))\">",
    f"<form action=\"javascript:alert('{MARK}')\"><button>x</button></form>",
    f"<button formaction=\"javascript:alert('{MARK}')\">x</button>",
    f"<math><mtext><table><mglyph><style><img src=x onerror=alert('{MARK}')>",
    f"<{MARK}>",
    f'<div data-{MARK}="1" hx-get="/" hx-trigger="load">',
    f'" hx-get="/healthz" hx-trigger="load" data-{MARK}="',
    f"{{{{7*7}}}}<{MARK}>",
    f"{{% debug %}}<{MARK}>",
    f"${{alert('{MARK}')}}",
    f"[url=javascript:alert('{MARK}')]click[/url]",
    f"[url]javascript:alert('{MARK}')[/url]",
    f"[img]javascript:alert('{MARK}')[/img]",
    f"[color=\"><script>alert('{MARK}')</script>]x[/color]",
    f"[b]<script>alert('{MARK}')</script>[/b]",
    f"&lt;script&gt;alert('{MARK}')&lt;/script&gt;<{MARK}>",
    f"%3Cscript%3Ealert('{MARK}')%3C/script%3E<{MARK}>",
    f"<scr<script>ipt>alert('{MARK}')</scr</script>ipt>",
    f"<<script>script>alert('{MARK}')<</script>/script>",
    f"\u202e<script>alert('{MARK}')</script>",
    f"<!--<img src=x onerror=alert('{MARK}')>-->",
    f"<noscript><p title=\"</noscript><img src=x onerror=alert('{MARK}')>\">",
)

_URL_ATTRS = frozenset(
    {"href", "src", "action", "formaction", "data", "poster", "xlink:href", "background"}
)
_DANGEROUS_SCHEMES = ("javascript:", "vbscript:", "data:")


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if MARK in tag:
            self.found.append(f"<{tag}>")
        self._in_script = tag in ("script", "style")
        for name, raw in attrs:
            value = raw or ""
            low = value.strip().lower().replace("\t", "").replace("\n", "")
            if MARK in name:
                self.found.append(f"attribute {name}")
            elif MARK not in value:
                continue
            elif name.startswith("on"):
                self.found.append(f"<{tag} {name}>")
            elif name in _URL_ATTRS and low.startswith(_DANGEROUS_SCHEMES):
                self.found.append(f"<{tag} {name}={value[:40]}>")
            elif name == "style" and ("expression" in low or "url(" in low):
                self.found.append(f"<{tag} style>")
            elif name in ("srcdoc", "content") or name.startswith("hx-"):
                self.found.append(f"<{tag} {name}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and MARK in data:
            self.found.append("script/style text")


def injected(html: str) -> list[str]:
    """Markup in `html` that a payload brought in (empty when everything was escaped)."""
    scan = _Scan()
    scan.feed(html)
    scan.close()
    return scan.found


@dataclass
class Tally:
    """Probes tried and held for one category, and the first failures for the report."""

    tried: int = 0
    held: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        self.tried += 1
        if ok:
            self.held += 1
        elif len(self.failures) < 10:
            self.failures.append(what[:300])

    def as_dict(self) -> dict[str, Any]:
        return {"tried": self.tried, "held": self.held, "failures": self.failures}


@dataclass
class World:
    """Portal A (ours, the frame token's) and portal B (another customer's), both real sandbox
    portals, with B's rows marked by `secret`."""

    control: Any
    client: Any
    portal_a: Any
    portal_b: Any
    line_a: Any
    line_b: Any
    campaign_a: Any
    campaign_b: Any
    delivery_a: Any
    delivery_b: Any
    template_b: Any
    secret: str
    attacker: dict[str, Any]  # a real token pair of a plain user on portal B
    token_a: str = ""

    def frame(self, *, htmx: bool = True, target: str = "") -> dict[str, str]:
        headers = {"HTTP_X_FRAME_TOKEN": self.token_a}
        if htmx:
            headers["HTTP_HX_REQUEST"] = "true"
        if target:
            headers["HTTP_HX_TARGET"] = target
        return headers


def build_world(control: Any, client: Any) -> World:
    """Two sandbox portals connected as installs would leave them, and rows on each."""
    from b24app.campaigns import audience as aud
    from b24app.campaigns.models import Campaign, Exclusion, Recipient
    from b24app.messaging.models import Delivery, Line, Template
    from b24app.portals import frame
    from b24app.sandbox.state import LINE_CODE
    from bench import scenario

    portal_a = scenario.connect_portal(control, 1)
    portal_b = scenario.connect_portal(control, 2)
    secret = f"SECRETB{secrets.token_hex(8)}"
    lines = {}
    for portal in (portal_a, portal_b):
        lines[portal.pk] = Line.objects.create(
            portal=portal, code=LINE_CODE, name="News", bot_id=1001, join_status="joined"
        )
    line_a, line_b = lines[portal_a.pk], lines[portal_b.pk]
    line_b.name = secret
    line_b.save()

    def campaign(portal: Any, line: Any, text: str) -> Any:
        row = Campaign.objects.create(
            portal=portal,
            line=line,
            line_code=line.code,
            name=text,
            message=text,
            audience=aud.Audience("users", (3, 4)).to_json(),
            status=Campaign.Status.READY,
        )
        Recipient.objects.create(campaign=row, user_id=3, name=text, last_name=text)
        return row

    def delivery(portal: Any, line: Any, text: str) -> Any:
        return Delivery.objects.create(
            portal=portal,
            line=line,
            user_id=3,
            recipient_name=text,
            message=text,
            status=Delivery.Status.SENT,
        )

    campaign_a = campaign(portal_a, line_a, "Our news")
    campaign_b = campaign(portal_b, line_b, secret)
    delivery_a = delivery(portal_a, line_a, "Our message")
    delivery_b = delivery(portal_b, line_b, secret)
    template_b = Template.objects.create(portal=portal_b, name=secret, data={"message": secret})
    Exclusion.objects.create(portal=portal_b, user_id=9, note=secret)
    attacker = control.control(action="issue_token", portal=2, user=3)["token"]
    world = World(
        control=control,
        client=client,
        portal_a=portal_a,
        portal_b=portal_b,
        line_a=line_a,
        line_b=line_b,
        campaign_a=campaign_a,
        campaign_b=campaign_b,
        delivery_a=delivery_a,
        delivery_b=delivery_b,
        template_b=template_b,
        secret=secret,
        attacker=attacker,
    )
    world.token_a = frame.issue_token(portal=portal_a, user_id=1, admin=True, language="en")
    return world


def _text(response: Any) -> str:
    content = getattr(response, "content", None)
    if content is None:  # streaming
        content = b"".join(response.streaming_content)
    return content.decode("utf-8", "replace")


def _portal_fingerprint() -> list[tuple[Any, ...]]:
    from b24app.portals.models import Portal

    return [
        (p.member_id, p.domain, p.status, p.access_token, p.refresh_token)
        for p in Portal.objects.order_by("member_id")
    ]


# --- forged requests ---------------------------------------------------------------------------


def forged_install(world: World) -> Tally:
    """Install POSTs that must never create or change a portal."""
    tally = Tally()
    a, b = world.portal_a, world.portal_b
    attacker = world.attacker
    base = {"PROTOCOL": "0", "LANG": "en", "APP_SID": "x"}
    cases: list[tuple[str, dict[str, str]]] = [
        ("garbage tokens for A", {"DOMAIN": a.domain, "member_id": a.member_id,
                                  "AUTH_ID": "x" * 32, "REFRESH_ID": "y" * 32}),
        ("B's tokens claiming A", {"DOMAIN": a.domain, "member_id": a.member_id,
                                   "AUTH_ID": attacker["access_token"],
                                   "REFRESH_ID": attacker["refresh_token"]}),
        ("B's tokens, A's member_id, B's domain", {"DOMAIN": b.domain, "member_id": a.member_id,
                                                   "AUTH_ID": attacker["access_token"],
                                                   "REFRESH_ID": attacker["refresh_token"]}),
        ("foreign OAuth server", {"DOMAIN": a.domain, "member_id": a.member_id,
                                  "AUTH_ID": "x" * 32, "REFRESH_ID": "y" * 32,
                                  "SERVER_ENDPOINT": "https://oauth.evil.example/rest/"}),
        ("foreign portal host", {"DOMAIN": "acme.bitrix24.evil.example", "member_id": "f" * 32,
                                 "AUTH_ID": "x" * 32, "REFRESH_ID": "y" * 32}),
        ("malformed member_id", {"DOMAIN": a.domain, "member_id": f"<{MARK}>",
                                 "AUTH_ID": "x", "REFRESH_ID": "y"}),
        ("malformed domain", {"DOMAIN": f"a.b/<{MARK}>", "member_id": a.member_id,
                              "AUTH_ID": "x", "REFRESH_ID": "y"}),
        ("missing tokens", {"DOMAIN": a.domain, "member_id": a.member_id}),
    ]  # fmt: skip
    for name, data in cases:
        before = _portal_fingerprint()
        response = world.client.post("/b24/install/", {**base, **data})
        body = _text(response)
        ok = (
            400 <= response.status_code < 500
            and _portal_fingerprint() == before
            and "frame_token" not in body
            and attacker["refresh_token"] not in body
            and not injected(body)
        )
        tally.check(ok, f"{name}: {response.status_code}")
    return tally


def forged_events(world: World) -> Tally:
    """Event POSTs with a wrong secret, or tokens that are not the portal's."""
    tally = Tally()
    a = world.portal_a
    attacker = world.attacker
    cases: list[tuple[str, dict[str, str]]] = [
        ("uninstall with a wrong secret", {"event": "ONAPPUNINSTALL",
                                           "auth[member_id]": a.member_id,
                                           "auth[application_token]": "w" * 32}),
        ("uninstall of an unknown portal", {"event": "ONAPPUNINSTALL",
                                            "auth[member_id]": "e" * 32,
                                            "auth[application_token]": "w" * 32}),
        ("install with B's tokens for A", {"event": "ONAPPINSTALL",
                                           "auth[member_id]": a.member_id,
                                           "auth[application_token]": "w" * 32,
                                           "auth[domain]": a.domain,
                                           "auth[client_endpoint]": f"http://{a.domain}/rest/",
                                           "auth[server_endpoint]": a.server_endpoint,
                                           "auth[access_token]": attacker["access_token"],
                                           "auth[refresh_token]": attacker["refresh_token"]}),
        ("update with garbage tokens", {"event": "ONAPPUPDATE",
                                        "auth[member_id]": a.member_id,
                                        "auth[application_token]": "w" * 32,
                                        "auth[domain]": a.domain,
                                        "auth[access_token]": "x" * 32,
                                        "auth[refresh_token]": "y" * 32}),
        ("unknown event", {"event": f"<{MARK}>", "auth[member_id]": a.member_id,
                           "auth[application_token]": "w" * 32}),
        ("no auth", {"event": "ONAPPUNINSTALL"}),
    ]  # fmt: skip
    for name, data in cases:
        before = _portal_fingerprint()
        response = world.client.post("/b24/events/", data)
        body = _text(response)
        ok = (
            400 <= response.status_code < 500
            and _portal_fingerprint() == before
            and attacker["refresh_token"] not in body
        )
        tally.check(ok, f"{name}: {response.status_code}")
    return tally


def forged_entry(world: World) -> Tally:
    """App-page POSTs that must not hand out a frame token."""
    tally = Tally()
    a, b = world.portal_a, world.portal_b
    attacker = world.attacker
    cases: list[tuple[str, dict[str, str]]] = [
        ("garbage AUTH_ID for A", {"DOMAIN": a.domain, "member_id": a.member_id,
                                   "AUTH_ID": "x" * 32}),
        ("B's user token claiming A", {"DOMAIN": a.domain, "member_id": a.member_id,
                                       "AUTH_ID": attacker["access_token"]}),
        ("A's member_id on B's domain", {"DOMAIN": b.domain, "member_id": a.member_id,
                                         "AUTH_ID": attacker["access_token"]}),
        ("unknown portal", {"DOMAIN": a.domain, "member_id": "d" * 32, "AUTH_ID": "x" * 32}),
        ("wrong application token", {"DOMAIN": b.domain, "member_id": b.member_id,
                                     "AUTH_ID": attacker["access_token"],
                                     "APPLICATION_TOKEN": "w" * 32}),
        ("script in DOMAIN", {"DOMAIN": f"<script>{MARK}</script>", "member_id": a.member_id,
                              "AUTH_ID": "x"}),
    ]  # fmt: skip
    for name, data in cases:
        before = _portal_fingerprint()
        response = world.client.post("/b24/app/?PROTOCOL=0", data, HTTP_X_FRAME_REENTER="1")
        body = _text(response)
        ok = (
            400 <= response.status_code < 500
            and _portal_fingerprint() == before
            and "frame_token" not in body
            and not response.has_header("X-Frame-Token")
            and not injected(body)
        )
        tally.check(ok, f"{name}: {response.status_code}")
    return tally


def forged_frame_token(world: World) -> Tally:
    """Frame tokens that are not ours: garbage, tampered, or naming a portal by the wrong id."""
    from django.core import signing

    from b24app.portals import frame

    tally = Tally()
    good = world.token_a
    forged = signing.dumps(
        {"p": world.portal_b.pk, "m": world.portal_a.member_id, "u": 1, "a": True, "l": "en"},
        salt="b24app.portals.frame",
        key="not-our-secret-key-0123456789",
        compress=True,
    )
    mixed = frame.issue_token(portal=world.portal_a, user_id=1, admin=True, language="en")
    mixed_payload = signing.loads(mixed, salt="b24app.portals.frame")
    mixed_payload["m"] = world.portal_b.member_id  # A's row id, B's member_id: no such portal
    mixed_forged = signing.dumps(
        mixed_payload, salt="b24app.portals.frame", key="not-our-secret-key", compress=True
    )
    tokens = {
        "garbage": "x" * 40,
        "tampered": good[:-3] + ("aaa" if not good.endswith("aaa") else "bbb"),
        "signed with another key": forged,
        "another key, mixed ids": mixed_forged,
        "empty": "",
    }
    for name, token in tokens.items():
        for url in ("/app/messages/history/", "/app/campaigns/", "/app/admin/status/"):
            response = world.client.get(url, HTTP_X_FRAME_TOKEN=token, HTTP_HX_REQUEST="true")
            body = _text(response)
            ok = response.status_code in (401, 403) and world.secret not in body
            tally.check(ok, f"{name} {url}: {response.status_code}")
    return tally


def other_portal_ids(world: World) -> Tally:
    """Portal A's frame token naming B's rows: 4xx and nothing of B's in the answer."""
    tally = Tally()
    c, d, t, line = world.campaign_b, world.delivery_b, world.template_b, world.line_b
    probes: list[tuple[str, str, dict[str, str]]] = [
        ("get", f"/app/campaigns/{c.pk}/", {}),
        ("get", f"/app/campaigns/{c.pk}/state/", {}),
        ("get", f"/app/campaigns/{c.pk}/preview/", {}),
        ("get", f"/app/campaigns/{c.pk}/report/", {}),
        ("post", f"/app/campaigns/{c.pk}/action/", {"action": "start"}),
        ("post", f"/app/campaigns/{c.pk}/action/", {"action": "cancel"}),
        ("post", f"/app/campaigns/{c.pk}/action/", {"action": "duplicate"}),
        ("post", f"/app/campaigns/{c.pk}/recipients/", {"action": "resend", "recipients": "1"}),
        ("post", f"/app/campaigns/{c.pk}/export/", {}),
        ("get", f"/app/messages/history/{d.pk}/", {}),
        ("post", f"/app/messages/templates/{t.pk}/load/", {}),
        ("post", f"/app/messages/templates/{t.pk}/delete/", {}),
        ("post", f"/app/messages/lines/{line.pk}/join/", {}),
    ]
    before = _rows_of_b(world)
    for method, url, data in probes:
        call = world.client.get if method == "get" else world.client.post
        response = call(url, data, **world.frame())
        body = _text(response)
        ok = 400 <= response.status_code < 500 and world.secret not in body
        tally.check(ok, f"{method} {url}: {response.status_code}")
    # B's ids inside forms and filters of A's own pages: refused or ignored, never shown.
    smuggled: list[tuple[str, str, dict[str, str]]] = [
        ("post", "/app/messages/preview/", {"line": str(line.pk), "message": "hi", "user_id": "3"}),
        ("post", "/app/messages/send/", {"line": str(line.pk), "message": "hi", "user_id": "3"}),
        ("get", "/app/messages/history/", {"line": str(line.pk)}),
        ("get", "/app/messages/history/", {"recipient": "3"}),
        ("post", "/app/campaigns/new/", {"line": str(line.pk), "name": "x", "message": "hi",
                                         "audience": "users", "user_ids": "3",
                                         "time_zone": "UTC"}),
        ("post", f"/app/campaigns/{world.campaign_a.pk}/recipients/",
         {"action": "resend", "recipients": str(c.recipients.first().pk)}),
    ]  # fmt: skip
    for method, url, data in smuggled:
        call = world.client.get if method == "get" else world.client.post
        response = call(url, data, **world.frame())
        body = _text(response)
        ok = response.status_code < 500 and world.secret not in body
        tally.check(ok, f"{method} {url} with B's id: {response.status_code}")
    tally.check(_rows_of_b(world) == before, "B's rows changed")
    return tally


def _rows_of_b(world: World) -> tuple[Any, ...]:
    from b24app.campaigns.models import Campaign
    from b24app.messaging.models import Delivery, Line, Template

    b = world.portal_b
    return (
        list(Campaign.objects.filter(portal=b).values_list("pk", "status", "name")),
        list(Delivery.objects.filter(portal=b).values_list("pk", "status")),
        list(Template.objects.filter(portal=b).values_list("pk", "name")),
        list(Line.objects.filter(portal=b).values_list("pk", "join_status", "name")),
        Campaign.objects.filter(name__contains=world.secret).count(),
    )


HUGE_IDS = (str(2**31), str(2**63), "9" * 20, "-1", "0")


def huge_ids(world: World) -> Tally:
    """Ids past every integer column (Postgres int, SQLite's 64 bits) in every id field and URL."""
    tally = Tally()
    line = str(world.line_a.pk)
    c = world.campaign_a.pk
    for value in HUGE_IDS:
        posts: list[tuple[str, dict[str, str]]] = [
            ("/app/messages/preview/", {"line": line, "message": "hi", "user_id": value}),
            ("/app/messages/send/", {"line": line, "message": "hi", "user_id": value}),
            ("/app/messages/recipient/", {"line": line, "pick_user_id": value, "pick_name": "x"}),
            ("/app/messages/preview/", {"line": value, "message": "hi", "user_id": "3"}),
            ("/app/campaigns/new/", {"line": line, "name": "x", "message": "hi",
                                     "audience": "users", "user_ids": value, "time_zone": "UTC"}),
            ("/app/campaigns/new/", {"line": line, "name": "x", "message": "hi",
                                     "audience": "departments", "department_ids": value,
                                     "time_zone": "UTC"}),
            ("/app/campaigns/settings/", {"form": "settings", "allowed_user_ids": value,
                                          "allowed_department_ids": value, "time_zone": "UTC"}),
            ("/app/campaigns/settings/", {"form": "exclusions", "user_ids": value}),
            (f"/app/campaigns/{c}/recipients/", {"action": "resend", "recipients": value}),
            (f"/app/campaigns/{c}/preview/", {"user_id": value}),
        ]  # fmt: skip
        for url, data in posts:
            call = world.client.get if url.endswith("/preview/") and "campaigns" in url else None
            response = (call or world.client.post)(url, data, **world.frame())
            tally.check(response.status_code < 500, f"{url} {data}: {response.status_code}")
        digits = value.lstrip("-")
        for url in (
            f"/app/campaigns/{digits}/",
            f"/app/campaigns/{digits}/report/",
            f"/app/messages/history/{digits}/",
            f"/app/messages/templates/{digits}/load/",
        ):
            call = world.client.post if "templates" in url else world.client.get
            response = call(url, {}, **world.frame())
            tally.check(response.status_code < 500, f"{url}: {response.status_code}")
        response = world.client.get("/app/messages/history/", {"recipient": value}, **world.frame())
        tally.check(
            response.status_code < 500, f"history ?recipient={value}: {response.status_code}"
        )
    return tally


# --- XSS ---------------------------------------------------------------------------------------

COMPOSER_TEXT_FIELDS = (
    "message",
    "recipient_name",
    "user_id",
    "pick_name",
    "save_as",
    "line_code",
    "attach_json",
    "keyboard_json",
    "attach-color",
    "attach-0-link",
    "attach-0-name",
    "attach-0-desc",
    "attach-1-text",
    "attach-2-item-0-name",
    "attach-2-item-0-value",
    "attach-2-item-0-link",
    "attach-3-link",
    "attach-3-preview",
    "attach-4-name",
    "attach-4-link",
    "attach-4-avatar",
    "kb-0-text",
    "kb-0-link",
    "kb-0-bg_color",
    "kb-0-text_color",
    "preview_width",
)
COMPOSER_KINDS = {
    "attach-0-kind": "LINK",
    "attach-1-kind": "MESSAGE",
    "attach-2-kind": "GRID",
    "attach-2-item-0-display": "LINE",
    "attach-3-kind": "IMAGE",
    "attach-4-kind": "USER",
    "kb-0-kind": "button",
    "kb-0-display": "LINE",
    "url_preview": "on",
}
COMPOSER_ENDPOINTS = (
    "preview",
    "send",
    "attach",
    "keyboard",
    "recipient",
    "draft",
    "template_save",
    "lines",
)
CAMPAIGN_TEXT_FIELDS = (
    "name",
    "message",
    "attach",
    "keyboard",
    "user_ids",
    "department_ids",
    "time_zone",
    "scheduled_at",
    "window_start",
    "window_end",
)
SETTINGS_TEXT_FIELDS = ("allowed_user_ids", "allowed_department_ids", "time_zone")
EXCLUSION_TEXT_FIELDS = ("user_ids", "note")
PORTAL_SETTINGS_FIELDS = ("plan", "rate", "burst")


@dataclass(frozen=True)
class Form:
    """One form of the app: where it posts, its fixed fields and the text fields a user types."""

    name: str
    url: str
    fixed: dict[str, str]
    text_fields: tuple[str, ...]
    target: str = ""


def forms_of(world: World) -> list[Form]:
    from django.urls import reverse

    line = str(world.line_a.pk)
    found = [
        Form(
            f"composer:{endpoint}",
            reverse(f"messaging:{endpoint}"),
            {"line": line, **COMPOSER_KINDS, "add_block": "GRID"}
            if endpoint == "attach"
            else {"line": line, **COMPOSER_KINDS},
            COMPOSER_TEXT_FIELDS,
            endpoint,
        )
        for endpoint in COMPOSER_ENDPOINTS
    ]
    found += [
        Form(
            "campaigns:new",
            "/app/campaigns/new/",
            {"line": line, "audience": "users", "url_preview": "on"},
            CAMPAIGN_TEXT_FIELDS,
        ),
        Form("campaigns:settings", "/app/campaigns/settings/", {"form": "settings"},
             SETTINGS_TEXT_FIELDS),
        Form("campaigns:exclusions", "/app/campaigns/settings/", {"form": "exclusions"},
             EXCLUSION_TEXT_FIELDS),
        Form("portals:settings", "/app/admin/settings/", {"nfr": "on"}, PORTAL_SETTINGS_FIELDS),
        Form(
            "campaigns:action",
            f"/app/campaigns/{world.campaign_a.pk}/action/",
            {},
            ("action", "at", "scheduled_at"),
        ),
        Form(
            "campaigns:recipients",
            f"/app/campaigns/{world.campaign_a.pk}/recipients/",
            {},
            ("action", "recipients"),
        ),
    ]  # fmt: skip
    return found


def xss_forms(world: World, payloads: Iterable[str] = XSS_PAYLOADS) -> Tally:
    """Every text field of every form gets every payload (one payload per field per request,
    rotated, so a request exercises all fields at once)."""
    tally = Tally()
    chosen = list(payloads)
    for form in forms_of(world):
        for round_ in range(len(chosen)):
            data = dict(form.fixed)
            for offset, name in enumerate(form.text_fields):
                data[name] = chosen[(round_ + offset) % len(chosen)]
            response = world.client.post(form.url, data, **world.frame(target=form.target))
            body = _text(response)
            found = injected(body) if "html" in response.get("Content-Type", "") else []
            ok = response.status_code < 500 and not found
            for _field in form.text_fields:
                tally.check(ok, f"{form.name} round {round_}: {response.status_code} {found[:3]}")
    return tally


def xss_stored(world: World, payloads: Iterable[str] = XSS_PAYLOADS) -> Tally:
    """The payloads stored in every text column the pages show, then every page rendered."""
    from django.utils import timezone

    from b24app.campaigns.models import Campaign, Exclusion, Recipient
    from b24app.messaging.models import Delivery, Line, Template
    from b24app.portals.models import AuditEntry

    tally = Tally()
    a = world.portal_a
    pages = [
        "/app/campaigns/",
        f"/app/campaigns/{world.campaign_a.pk}/",
        f"/app/campaigns/{world.campaign_a.pk}/state/",
        f"/app/campaigns/{world.campaign_a.pk}/preview/",
        f"/app/campaigns/{world.campaign_a.pk}/report/",
        "/app/campaigns/settings/",
        "/app/messages/",
        "/app/messages/history/",
        f"/app/messages/history/{world.delivery_a.pk}/",
        "/app/admin/status/",
        "/app/admin/audit/",
    ]
    template = Template.objects.create(portal=a, name="t", data={})
    exclusion = Exclusion.objects.create(portal=a, user_id=77, note="n")
    entry = AuditEntry.objects.create(portal=a, action="campaign.start", target="t")
    for payload in payloads:
        Campaign.objects.filter(pk=world.campaign_a.pk).update(
            name=payload,
            message=payload,
            blocked_code="ACCESS_DENIED",
            blocked_detail=payload,
            resolve_error=payload,
            author_name=payload,
            status=Campaign.Status.BLOCKED,
            started_at=timezone.now() - timedelta(minutes=1),
        )
        Recipient.objects.filter(campaign=world.campaign_a).update(name=payload, last_name=payload)
        Delivery.objects.filter(pk=world.delivery_a.pk).update(
            message=payload,
            recipient_name=payload,
            error_code="UNKNOWN",
            error_message=payload,
            status=Delivery.Status.UNKNOWN,
        )
        Line.objects.filter(pk=world.line_a.pk).update(name=payload, join_error=payload)
        Template.objects.filter(pk=template.pk).update(name=payload, data={"message": payload})
        Exclusion.objects.filter(pk=exclusion.pk).update(note=payload)
        AuditEntry.objects.filter(pk=entry.pk).update(
            actor_name=payload, target=payload, details={"note": payload}
        )
        for page in pages:
            for htmx in (True, False):
                response = world.client.get(page, **world.frame(htmx=htmx))
                body = _text(response)
                found = injected(body) if "html" in response.get("Content-Type", "") else []
                tally.check(
                    response.status_code < 500 and not found,
                    f"{page} htmx={htmx}: {response.status_code} {found[:3]} {payload[:30]}",
                )
    return tally


# --- oversized bodies --------------------------------------------------------------------------


def oversized(world: World) -> Tally:
    """POST bodies over the limit, with a Content-Length and chunked without one: 413."""
    from io import BytesIO

    from django.conf import settings

    tally = Tally()
    limit = int(settings.B24_BODY_LIMIT)
    urls = [
        ("/b24/install/", {}),
        ("/b24/events/", {}),
        ("/b24/app/", {}),
        ("/app/messages/preview/", world.frame()),
        ("/app/messages/send/", world.frame()),
        ("/app/messages/draft/", world.frame()),
        ("/app/messages/templates/", world.frame()),
        ("/app/campaigns/settings/", world.frame()),
        (f"/app/campaigns/{world.campaign_a.pk}/action/", world.frame()),
        ("/app/admin/settings/", world.frame()),
    ]
    body = ("message=" + "x" * (limit + 10)).encode()
    for url, headers in urls:
        response = world.client.post(
            url, body, content_type="application/x-www-form-urlencoded", **headers
        )
        tally.check(response.status_code == 413, f"{url} with length: {response.status_code}")
        response = world.client.generic(
            "POST",
            url,
            b"",
            content_type="application/x-www-form-urlencoded",
            **headers,
            **{
                "CONTENT_LENGTH": "",
                "wsgi.input": BytesIO(body),
                "wsgi.input_terminated": True,
            },
        )
        tally.check(response.status_code == 413, f"{url} chunked: {response.status_code}")
    return tally


# --- random forms (hypothesis) -----------------------------------------------------------------


def fuzz(world: World, *, examples: int) -> dict[str, dict[str, Any]]:
    """At least `examples` hypothesis-generated posts per form; never a 500 or an injection."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    values = st.one_of(
        st.text(alphabet=st.characters(codec="utf-8"), max_size=60),
        st.sampled_from(XSS_PAYLOADS),
        st.sampled_from(["", "0", "-1", "1e309", "99999999999999999999", "on", "Y", "\x00",
                         "[]", "{}", "null", "users", "departments", "all", "csv", "custom",
                         "standard", "enterprise", "start", "pause", "resume", "cancel",
                         "duplicate", "resend", "mark", "GRID", "LINK", "button",
                         str(world.line_a.pk), str(world.line_b.pk),
                         str(world.campaign_b.pk), world.portal_b.member_id]),
    )  # fmt: skip
    results: dict[str, dict[str, Any]] = {}
    public = [
        Form("public:install", "/b24/install/", {},
             ("DOMAIN", "member_id", "AUTH_ID", "REFRESH_ID", "PROTOCOL", "LANG",
              "SERVER_ENDPOINT", "APPLICATION_TOKEN", "AUTH_EXPIRES", "PLACEMENT_OPTIONS")),
        Form("public:entry", "/b24/app/", {},
             ("DOMAIN", "member_id", "AUTH_ID", "REFRESH_ID", "PROTOCOL", "LANG", "APP_SID",
              "APPLICATION_TOKEN", "PLACEMENT", "PLACEMENT_OPTIONS")),
        Form("public:events", "/b24/events/", {},
             ("event", "auth[member_id]", "auth[application_token]", "auth[domain]",
              "auth[access_token]", "auth[refresh_token]", "data[VERSION]", "data[CLEAN]", "ts")),
    ]  # fmt: skip

    def checker(form: Form, tally: Tally, headers: dict[str, str]) -> Any:
        keys = st.one_of(st.sampled_from(form.text_fields), st.text(max_size=12))

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(data=st.dictionaries(keys, values, max_size=len(form.text_fields) + 3))
        def check(data: dict[str, str]) -> None:
            posted = {**form.fixed, **data}
            response = world.client.post(form.url, posted, **headers)
            body = _text(response)
            found = injected(body) if "html" in response.get("Content-Type", "") else []
            tally.check(
                response.status_code < 500 and not found and world.secret not in body,
                f"{json.dumps(posted)[:200]}: {response.status_code} {found[:3]}",
            )

        return check

    for form in [*public, *forms_of(world)]:
        tally = Tally()
        headers = {} if form.name.startswith("public:") else world.frame(target=form.target)
        checker(form, tally, headers)()
        results[form.name] = tally.as_dict()
    return results


# --- everything --------------------------------------------------------------------------------


def run_checks(
    world: World, *, payloads: Iterable[str] = XSS_PAYLOADS, examples: int = 200
) -> dict[str, Any]:
    """All categories against `world`; the tallies, and the totals."""
    chosen = list(payloads)
    tallies: dict[str, Tally] = {
        "forged_install": forged_install(world),
        "forged_events": forged_events(world),
        "forged_entry": forged_entry(world),
        "forged_frame_token": forged_frame_token(world),
        "other_portal_ids": other_portal_ids(world),
        "huge_ids": huge_ids(world),
        "xss_forms": xss_forms(world, chosen),
        "xss_stored": xss_stored(world, chosen),
        "oversized": oversized(world),
    }
    out: dict[str, Any] = {name: t.as_dict() for name, t in tallies.items()}
    out["fuzz"] = fuzz(world, examples=examples)
    tried = sum(t.tried for t in tallies.values()) + sum(f["tried"] for f in out["fuzz"].values())
    held = sum(t.held for t in tallies.values()) + sum(f["held"] for f in out["fuzz"].values())
    out["xss_payloads"] = len(chosen)
    out["fuzz_examples_per_form"] = examples
    out["tried"] = tried
    out["held"] = held
    return out


def client_for_checks() -> Any:
    """A test client that returns 500s instead of raising them, on an allowed host."""
    from django.test import Client

    return Client(raise_request_exception=False, HTTP_HOST="127.0.0.1")


def run_all(env: Any) -> dict[str, Any]:
    """`make chaos`: a sandbox subprocess with two portals, then every check."""
    from django.test.utils import override_settings

    from bench.procs import SandboxProcess, reset_app_data

    reset_app_data()
    sandbox = SandboxProcess(env, port=8140, portals=2, users=60, name="hostile-sandbox")
    with sandbox, override_settings(B24_PUBLIC_RATE="1000000/m"):
        world = build_world(sandbox.control, client_for_checks())
        return run_checks(world)
