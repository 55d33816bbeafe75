"""Forged requests, other portals' ids, XSS payloads, oversized bodies and random forms: no 500,
no leak, no markup of theirs in our pages (bench/hostile.py, fewer payloads and examples)."""

from __future__ import annotations

import pytest

from b24app.sandbox.control import ControlClient
from bench import hostile

pytestmark = [pytest.mark.sandbox, pytest.mark.django_db]


def test_the_injection_check_sees_markup_a_payload_brought_in():
    payload = hostile.XSS_PAYLOADS[1]

    assert hostile.injected(f'<input value="{payload}">')
    assert hostile.injected(f"<p>{payload}</p>")
    assert hostile.injected(f"<a href=\"javascript:alert('{hostile.MARK}')\">x</a>")
    assert not hostile.injected('<input value="&quot;&gt;&lt;script&gt;b24xss">')
    assert not hostile.injected(f"<p>{payload.replace('<', '&lt;')}</p>")
    assert not hostile.injected(f'<a href="https://example.com/{hostile.MARK}">x</a>')


def test_hostile_requests_get_no_500_no_leak_and_no_foreign_markup(control: ControlClient):
    world = hostile.build_world(control, hostile.client_for_checks())

    result = hostile.run_checks(world, payloads=hostile.XSS_PAYLOADS[::8], examples=10)

    found = {
        name: value["failures"]
        for name, value in {**result, **result["fuzz"]}.items()
        if isinstance(value, dict) and value.get("failures")
    }
    assert not found, found
    assert result["tried"] > 400
