"""Every setting the environment can change is documented where operators look for it."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
SETTINGS = ROOT / "b24app" / "settings.py"
# env.str("NAME", ...), env.bool("NAME", ...), env.db("NAME", ...) and friends.
READ = re.compile(r'env\.\w+\(\s*"([A-Z][A-Z0-9_]*)"')


def _variables() -> set[str]:
    return set(READ.findall(SETTINGS.read_text(encoding="utf-8")))


def test_every_variable_settings_read_is_in_env_example():
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, flags=re.M))

    assert len(_variables()) > 20  # the settings really were read
    assert _variables() - listed == set()


def test_every_variable_settings_read_is_in_the_readme_table():
    table = (ROOT / "README.md").read_text(encoding="utf-8")

    assert {name for name in _variables() if f"`{name}`" not in table} == set()


def test_the_marketplace_app_code_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("B24_APP_CODE", "vendor.b24app")

    assert runpy.run_path(str(SETTINGS))["B24_APP_CODE"] == "vendor.b24app"


def test_without_an_app_code_the_client_id_is_expected(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("B24_APP_CODE", "")

    assert runpy.run_path(str(SETTINGS))["B24_APP_CODE"] == ""
