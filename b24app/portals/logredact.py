"""A logging filter that blanks anything shaped like a Bitrix token or secret.

Nothing in the app logs a token on purpose; this is the belt to those braces, for third-party
loggers (urllib3, requests) and exception messages that might echo a request.
"""

from __future__ import annotations

import logging
import re

_SECRET_PARAM = re.compile(
    r"(?i)((?:auth|access_token|refresh_token|client_secret|AUTH_ID|REFRESH_ID|application_token|"
    r"code)[\"']?\s*[=:]\s*[\"']?)([^&\s\"',}]+)"
)


def redact(text: str) -> str:
    """Replace the values of token-like parameters in `text` with `***`."""
    return _SECRET_PARAM.sub(r"\1***", text)


class RedactSecrets(logging.Filter):
    """Rewrite each record's message with secrets blanked before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True
