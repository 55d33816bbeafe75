"""Helpers for the Bitrix client tests: recorded replies and a connection to a fake portal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from b24app.bitrix import client

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bitrix"
ENDPOINT = "https://portal.bitrix24.com/rest/"
TOKEN = "s1morf609228iwyjjpvfv6wsvuja4p8u"


def reply(name: str) -> Any:
    """The JSON body stored in tests/fixtures/bitrix/<name>.json."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def error_fixtures() -> list[tuple[int, str, str]]:
    """Every stored error body as (HTTP status, code, file stem), from error_<status>_<code>."""
    found = []
    for path in sorted(FIXTURES.glob("error_*.json")):
        _, status, code = path.stem.split("_", 2)
        found.append((int(status), code, path.stem))
    return found


@pytest.fixture
def conn() -> client.Connection:
    return client.Connection(endpoint=ENDPOINT, access_token=TOKEN)
