"""OAuth 2.0 with the Bitrix24 authorization server: code exchange and token refresh.

Both grants go to ``https://<oauth-host>/oauth/token/``, whose host is region-dependent
(``oauth.bitrix.info``, ``oauth.bitrix24.tech``...): derive it from the ``server_endpoint``
Bitrix sent with :func:`token_url_for`, never hard-code it (spec §2).

These functions only talk HTTP. Storing the new pair, and making sure a refresh token is
used once, is the portals service's job (it holds a row lock around :func:`refresh_tokens`).

Docs: https://apidocs.bitrix24.com/settings/oauth/index.html
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from oauthlib.oauth2 import Client, InsecureTransportError, OAuth2Error, WebApplicationClient
from oauthlib.oauth2.rfc6749.parameters import prepare_token_request
from requests_oauthlib import OAuth2Session

from b24app.bitrix import client, errors, replies

DEFAULT_TIMEOUT_S = 10.0


def token_url_for(server_endpoint: str) -> str:
    """``https://oauth.bitrix.info/rest/`` → ``https://oauth.bitrix.info/oauth/token/``."""
    parts = urlsplit(server_endpoint.strip())
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"not an absolute server_endpoint: {server_endpoint!r}")
    return urlunsplit((parts.scheme, parts.netloc, "/oauth/token/", "", ""))


class _RedactSecrets(logging.Filter):
    """Blank out secrets in debug records of the HTTP libraries.

    Bitrix wants both grants as GET with ``client_secret``, ``code`` and ``refresh_token``
    in the query string, and urllib3 and requests-oauthlib log full URLs, request bodies and
    token dicts at DEBUG. This filter keeps the records but hides the values.
    """

    _QUERY = re.compile(r"(?i)\b(client_secret|refresh_token|access_token|code|auth)=([^&\s'\"]+)")
    _DICT = re.compile(
        r"(?i)(['\"](?:client_secret|refresh_token|access_token|code)['\"]\s*:\s*['\"])"
        r"([^'\"]+)"
    )

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` with secrets replaced by ``***``; always keep it."""
        message = record.getMessage()
        redacted = self._DICT.sub(r"\1***", self._QUERY.sub(r"\1=***", message))
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_REDACT = _RedactSecrets()
for _name in ("requests_oauthlib.oauth2_session", "urllib3.connectionpool", "oauthlib"):
    _logger = logging.getLogger(_name)
    if _REDACT not in _logger.filters:
        _logger.addFilter(_REDACT)


class _RefreshGrantClient(Client):  # type: ignore[misc]  # oauthlib ships no type hints
    """An oauthlib client whose token request is the ``refresh_token`` grant.

    ``OAuth2Session.refresh_token()`` always POSTs, but Bitrix documents the refresh as a GET
    with a query string and POST is unverified (spec §2.2). ``fetch_token(method="GET")``
    sends whatever body its client prepares as the query, so this client prepares the
    refresh grant, the way oauthlib's ``BackendApplicationClient`` prepares its own.
    """

    grant_type = "refresh_token"

    def prepare_request_body(
        self,
        code: str | None = None,
        body: str = "",
        redirect_uri: str | None = None,
        include_client_id: bool | None = True,
        **kwargs: Any,
    ) -> str:
        """The query of a refresh: grant_type, client_id, client_secret, refresh_token."""
        result: str = prepare_token_request(
            self.grant_type,
            body=body,
            include_client_id=include_client_id,
            client_id=self.client_id,
            **kwargs,
        )
        return result


def _session(oauth_client: Client, client_id: str) -> OAuth2Session:
    # Automatic refresh stays off: no auto_refresh_url and no token_updater. A refresh
    # token is single-use, so only the portals service may refresh, under its row lock.
    session = OAuth2Session(
        client_id=client_id,
        client=oauth_client,
        auto_refresh_url=None,
        token_updater=None,
    )
    return client.configure_session(session)


def _check_reply(captured: dict[str, Any]) -> Callable[[requests.Response], requests.Response]:
    """A response hook that classifies the token reply before oauthlib parses it.

    oauthlib would turn a Bitrix error body into its own exceptions and choke on an HTML
    page; we want our four kinds. The raw JSON is kept so the TokenSet sees every field
    (oauthlib splits ``scope`` on spaces and adds fields of its own).
    """

    def hook(response: requests.Response) -> requests.Response:
        # Token requests are writes: a refresh token is consumed by the first request that
        # reaches the server, so a lost reply leaves us not knowing which token is valid.
        failure = errors.classify(response.status_code, response.content, is_write=True)
        if failure is not None:
            raise failure
        data = response.json()
        if not isinstance(data.get("access_token"), str) or not data["access_token"]:
            raise errors.malformed("token reply without access_token", is_write=True)
        captured.update(data)
        return response

    return hook


def _fetch(
    oauth_client: Client,
    *,
    token_url: str,
    client_id: str,
    client_secret: str,
    timeout: float,
    **grant: str,
) -> replies.TokenSet:
    session = _session(oauth_client, client_id)
    captured: dict[str, Any] = {}
    session.register_compliance_hook("access_token_response", _check_reply(captured))
    try:
        # Bitrix documents both grants as GET with a query string (spec §2.1, §2.2), and
        # the official PHP SDK does the same; POST is unverified. include_client_id puts
        # client_id/client_secret in that query instead of an HTTP Basic header.
        session.fetch_token(
            token_url,
            method="GET",
            include_client_id=True,
            client_secret=client_secret,
            timeout=timeout,
            **grant,
        )
    except errors.BitrixError:
        raise
    except requests.RequestException as exc:
        # "from None": the chained exception's message holds the URL, secret included.
        raise errors.from_transport(exc, is_write=True) from None
    except InsecureTransportError:
        # oauthlib refuses plain http unless OAUTHLIB_INSECURE_TRANSPORT=1 is set (the
        # switch a local http sandbox needs); nothing was sent.
        raise ValueError("token_url must use https") from None
    except OAuth2Error as exc:
        reason = f"token reply refused by oauthlib: {exc.error}"
        raise errors.malformed(reason, is_write=True) from None
    finally:
        session.close()
    return replies.TokenSet.from_json(captured)


def exchange_code(
    *,
    token_url: str,
    client_id: str,
    client_secret: str,
    code: str,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> replies.TokenSet:
    """Trade an authorization ``code`` (valid 30 s) for a token pair.

    Raises ``Rejected("invalid_grant", ...)`` for a bad, used or expired code.
    """
    # https://apidocs.bitrix24.com/settings/oauth/index.html
    return _fetch(
        WebApplicationClient(client_id),
        token_url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        timeout=timeout,
        code=code,
    )


def refresh_tokens(
    *,
    token_url: str,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> replies.TokenSet:
    """Trade a refresh token for a new pair; the old refresh token is spent either way.

    Raises ``Rejected("invalid_grant", ...)`` when the refresh token is unknown, used or
    expired (the portal needs a new install or frame open), ``Unknown`` when the reply was
    lost after the request went out.
    """
    # https://apidocs.bitrix24.com/settings/oauth/index.html (section "Extending OAuth token")
    return _fetch(
        _RefreshGrantClient(client_id),
        token_url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        timeout=timeout,
        refresh_token=refresh_token,
    )
