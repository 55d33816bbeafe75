from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from b24app.bitrix import client
from b24app.portals import services
from b24app.portals.models import Portal
from tests.fakes import FakeBitrix


def race(portal_id: int, threads: int) -> tuple[list[Any], list[BaseException]]:
    results: list[Any] = []
    failures: list[BaseException] = []
    start = threading.Barrier(threads)

    def worker() -> None:
        try:
            start.wait()
            portal = Portal.objects.get(pk=portal_id)
            results.append(services.portal_call(portal, client.profile))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            failures.append(exc)
        finally:
            connection.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=60)
    return results, failures


def assert_single_refresh(make_portal: Callable[..., Portal], fake: FakeBitrix) -> None:
    portal = make_portal(expires_at=timezone.now() - timedelta(minutes=1))
    fake.expire_all()
    fake.refresh_delay = 0.05  # widen the window in which a second refresh could slip in

    results, failures = race(portal.pk, 20)

    assert failures == []
    assert len(results) == 20
    assert fake.refresh_count == 1
    assert fake.invalid_grant_count == 0
    assert Portal.objects.get().status == Portal.Status.ACTIVE


@pytest.mark.django_db(transaction=True)
def test_twenty_threads_with_an_expired_token_refresh_exactly_once(
    make_portal: Callable[..., Portal], fake_bitrix: FakeBitrix
):
    assert_single_refresh(make_portal, fake_bitrix)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_refresh_race_on_postgres_uses_row_locks(
    make_portal: Callable[..., Portal], fake_bitrix: FakeBitrix
):
    if connection.vendor != "postgresql":
        pytest.skip("DATABASE_URL does not point at Postgres")
    assert_single_refresh(make_portal, fake_bitrix)


@pytest.mark.django_db(transaction=True)
def test_a_token_bitrix_calls_expired_is_refreshed_once_and_the_call_repeated(
    make_portal: Callable[..., Portal], fake_bitrix: FakeBitrix
):
    portal = make_portal()  # our clock says fresh, Bitrix says expired (spec §2.2)
    fake_bitrix.expire_all()

    results, failures = race(portal.pk, 5)

    assert failures == [] and len(results) == 5
    assert fake_bitrix.refresh_count == 1


@pytest.mark.django_db
def test_a_genuine_invalid_grant_marks_the_portal_auth_failed(
    make_portal: Callable[..., Portal], fake_bitrix: FakeBitrix
):
    portal = make_portal(
        expires_at=timezone.now() - timedelta(minutes=1), refresh_token="already-spent"
    )

    with pytest.raises(services.PortalUnavailable):
        services.portal_call(portal, client.profile)

    portal.refresh_from_db()
    assert portal.status == Portal.Status.AUTH_FAILED
    assert portal.status_reason == "invalid_grant"


@pytest.mark.django_db
def test_an_auth_failed_portal_makes_no_calls(
    make_portal: Callable[..., Portal], fake_bitrix: FakeBitrix
):
    portal = make_portal(status=Portal.Status.AUTH_FAILED)

    with pytest.raises(services.PortalUnavailable):
        services.portal_call(portal, client.profile)
    assert len(fake_bitrix.rsps.calls) == 0


@pytest.mark.django_db
def test_beat_refreshes_only_portals_idle_long_enough(
    make_portal: Callable[..., Portal], fake_bitrix: FakeBitrix, settings: Any
):
    settings.B24_REFRESH_IDLE_DAYS = 20
    idle = make_portal(token_refreshed_at=timezone.now() - timedelta(days=21))
    busy = make_portal(member_id="d" * 32, token_refreshed_at=timezone.now() - timedelta(days=2))

    assert services.portals_refresh_idle() == 1

    idle.refresh_from_db()
    busy.refresh_from_db()
    assert idle.token_refreshed_at > timezone.now() - timedelta(minutes=1)
    assert busy.token_refreshed_at < timezone.now() - timedelta(days=1)
    assert fake_bitrix.refresh_count == 1


@pytest.mark.django_db
def test_tokens_are_encrypted_with_a_rotatable_key(
    make_portal: Callable[..., Portal], settings: Any
):
    from cryptography.fernet import Fernet

    portal = make_portal()
    old_keys = list(settings.B24_TOKEN_KEYS)
    settings.B24_TOKEN_KEYS = [Fernet.generate_key().decode(), *old_keys]

    assert Portal.objects.get().access_token == portal.access_token  # old key still reads
    Portal.objects.get().save()  # re-encrypts with the new key
    settings.B24_TOKEN_KEYS = settings.B24_TOKEN_KEYS[:1]
    assert Portal.objects.get().access_token == portal.access_token


@pytest.mark.django_db
def test_rotate_keys_command_moves_tokens_to_the_newest_key(
    make_portal: Callable[..., Portal], settings: Any
):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    portal = make_portal()
    new_key = Fernet.generate_key().decode()
    settings.B24_TOKEN_KEYS = [new_key, *settings.B24_TOKEN_KEYS]

    call_command("portals_rotate_keys")

    settings.B24_TOKEN_KEYS = [new_key]
    assert Portal.objects.get().refresh_token == portal.refresh_token
