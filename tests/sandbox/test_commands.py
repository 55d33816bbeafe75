"""`manage.py sandbox_token` and `manage.py sandbox_install` against the in-process sandbox."""

from __future__ import annotations

import io

import pytest
from django.apps import apps
from django.core.management import call_command

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(
        not apps.is_installed("b24app.sandbox"), reason="B24_SANDBOX is off: no sandbox commands"
    ),
]


def test_sandbox_token_prints_a_working_token(sandbox):
    sandbox.install(portal=2)
    out = io.StringIO()
    call_command("sandbox_token", portal=2, user=3, hub=sandbox.hub_url, stdout=out)
    token = out.getvalue().strip()
    assert sandbox.call("profile", 2, token=token).json()["result"]["ID"] == "3"


def test_sandbox_token_refuses_when_the_app_is_not_installed(sandbox):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not installed"):
        call_command("sandbox_token", portal=1, hub=sandbox.hub_url, stdout=io.StringIO())


def test_sandbox_install_posts_the_install_form_and_finishes(sandbox, event_receiver):
    sandbox.control(app_url=event_receiver.url)
    out = io.StringIO()
    call_command("sandbox_install", portal=1, hub=sandbox.hub_url, wait=0.5, stdout=out)
    (install_post,) = event_receiver.wait(1)
    assert install_post["path"].startswith("/b24/install/?DOMAIN=localhost%3A8151&PROTOCOL=0")
    assert install_post["content_type"] == "application/x-www-form-urlencoded"
    form = install_post["form"]
    assert form["member_id"] == sandbox.member_id(1)
    assert form["PLACEMENT"] == "DEFAULT"
    assert "PLACEMENT_OPTIONS" not in form
    assert sandbox.control()["state"]["portals"]["1"]["app_state"] == "installed"
    assert "INSTALLED=true" in out.getvalue()
    info = sandbox.call("app.info", token=form["AUTH_ID"]).json()["result"]
    assert info["INSTALLED"] is True
