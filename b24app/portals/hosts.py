"""Which hosts the app will call with a token it was handed.

An install POST or event names its own portal (`DOMAIN`) and OAuth server (`SERVER_ENDPOINT`).
Believing those blindly would let anyone make the app send requests to a host of their choice,
so both must match an allow-list from settings. Patterns are `host[:port]`; `*` and `?` match
within one dot-separated label, so `*.bitrix24.*` admits `acme.bitrix24.de` but never
`acme.bitrix24.evil.com`.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.translation import gettext as _

# What a portal host may look like at all, before the allow-list is consulted: `*` in a pattern
# matches any character, so without this a "host" could carry spaces, `;` or quotes into a URL
# or a Content-Security-Policy header.
_HOSTPORT = re.compile(r"^[a-z0-9.-]+(:[0-9]{1,5})?$")


class HostNotAllowed(ValueError):
    """The host is not on the allow-list (or uses plain HTTP where only HTTPS is allowed)."""


def _split(hostport: str) -> tuple[list[str], str]:
    host, _, port = hostport.lower().partition(":")
    return host.split("."), port


def host_matches(hostport: str, pattern: str) -> bool:
    """True when `hostport` (e.g. `acme.bitrix24.de` or `localhost:8101`) matches `pattern`."""
    labels, port = _split(hostport)
    want_labels, want_port = _split(pattern)
    if len(labels) != len(want_labels) or not all(labels):
        return False
    if bool(port) != bool(want_port) or (port and not fnmatchcase(port, want_port)):
        return False
    return all(fnmatchcase(label, want) for label, want in zip(labels, want_labels, strict=True))


def _allowed(hostport: str, patterns: list[str]) -> bool:
    return any(host_matches(hostport, p) for p in patterns)


def is_sandbox_host(hostport: str) -> bool:
    """True for the local sandbox's portals, the only ones that may use plain HTTP."""
    return bool(settings.B24_SANDBOX) and _allowed(hostport, settings.B24_SANDBOX_HOSTS)


def portal_endpoint(domain: str, *, https: bool) -> str:
    """The REST base `http(s)://<domain>/rest/` of an allowed portal, or HostNotAllowed."""
    domain = domain.strip().lower()
    if not _HOSTPORT.match(domain) or not _allowed(domain, settings.B24_PORTAL_HOSTS):
        raise HostNotAllowed(_("portal host %(host)s is not allowed") % {"host": repr(domain)})
    if not https and not is_sandbox_host(domain):
        raise HostNotAllowed(_("plain HTTP is allowed only for sandbox portals"))
    return f"{'https' if https else 'http'}://{domain}/rest/"


def portal_origin(domain: str, *, https: bool) -> str:
    """The web origin `http(s)://<domain>` of an allowed portal, or HostNotAllowed."""
    return portal_endpoint(domain, https=https).removesuffix("/rest/")


def oauth_endpoint(server_endpoint: str) -> str:
    """Validate an OAuth server REST base such as `https://oauth.bitrix.info/rest/`."""
    parts = urlsplit(server_endpoint.strip())
    host = parts.netloc.lower()
    if parts.scheme not in ("https", "http") or not host or "@" in host:
        raise HostNotAllowed(_("the OAuth server endpoint is not a URL"))
    if not _allowed(host, settings.B24_OAUTH_HOSTS):
        raise HostNotAllowed(_("OAuth host %(host)s is not allowed") % {"host": repr(host)})
    if parts.scheme == "http" and not is_sandbox_host(host):
        raise HostNotAllowed(_("plain HTTP is allowed only for the sandbox"))
    return f"{parts.scheme}://{host}/rest/"


def endpoint_domain(endpoint: str) -> str:
    """`host[:port]` of a REST base URL."""
    return urlsplit(endpoint).netloc.lower()
