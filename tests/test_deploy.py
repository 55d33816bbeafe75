from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _settings_variables() -> set[str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return {line.lstrip("# ").split("=")[0] for line in lines if "=" in line}


def production_env(**extra: str) -> dict[str, str]:
    """This environment minus every settings variable (pytest loaded .env into it)."""
    names = _settings_variables()
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(
        B24_ENV_FILE=os.devnull,
        SECRET_KEY="x7Gk2pQ9vLm4Rt8Wz1Yc6Nb3Hd5Jf0Sa9Ke2Lu7Mo4Pi1Qr8Ts3Vw6Xy5Zb0Cd-prod",
        ALLOWED_HOSTS="app.example.com",
        B24_CLIENT_ID="app.0000.0000",
        B24_CLIENT_SECRET="secret",
        **extra,
    )
    return env


def test_check_deploy_is_clean_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_keep_the_sandbox_off():
    code = (
        "from django.conf import settings as s; "
        "print(s.B24_SANDBOX, s.DEBUG, 'b24app.sandbox' in s.INSTALLED_APPS, s.B24_PORTAL_HOSTS)"
    )
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env={**production_env(), "DJANGO_SETTINGS_MODULE": "b24app.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("False False False")
    assert "81??" not in result.stdout
