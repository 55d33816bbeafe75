"""The Russian translation is complete, compiled, current with the source, and used.

- Every entry of the committed `locale/ru/LC_MESSAGES/django.po` has a translation (each of the
  three Russian plural forms too) and none is fuzzy; the committed `.mo` holds the same catalog.
- With the gettext tools installed (`apt-get install gettext`), `makemessages` run over the
  source into a scratch locale directory finds no string the committed `.po` lacks. Without
  them that test skips, unless `B24_REQUIRE` names `gettext` (CI does): then the skip fails.
- Pages follow the language of the frame token (LANG of the entry POST): the composer in Russian
  shows no English, and an entry refusal answers in the LANG Bitrix24 asked for.
- Every Bitrix24 error code of spec §2.3, §3.3, §5.3 and §5.8 has its own friendly text in both
  languages, shown with the code beside it.

After adding or changing strings: `make messages`, translate the new entries, commit both files.
"""

from __future__ import annotations

import gettext
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.utils import translation

from b24app.portals import error_texts, frame
from b24app.portals.models import Portal

BASE_DIR = Path(settings.BASE_DIR)
PO = BASE_DIR / "locale" / "ru" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")

# The same exclusions as `make messages`: the sandbox imitates Bitrix24 and stays English.
IGNORE = [".venv", "bench", "b24app/sandbox", "templates/sandbox", "tests", "static"]

RUSSIAN_PLURALS = 3


# --- a small PO reader -------------------------------------------------------------------------


@dataclass
class Entry:
    msgid: str
    msgctxt: str | None = None
    msgid_plural: str | None = None
    msgstr: str = ""
    plurals: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    line: int = 0

    @property
    def key(self) -> str:
        """The key gettext uses in a compiled catalog ("context\\x04msgid")."""
        return f"{self.msgctxt}\x04{self.msgid}" if self.msgctxt is not None else self.msgid


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"'}
_KEYWORD = re.compile(r'^(msgctxt|msgid_plural|msgid|msgstr\[(\d+)\]|msgstr)\s+(".*")$')


def _unquote(quoted: str) -> str:
    body = quoted.strip()[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def read_po(path: Path) -> tuple[dict[str, str], list[Entry]]:
    """The header fields and the entries of a PO file (as the gettext tools write it: one entry
    per blank-line separated block; obsolete `#~` entries are left out)."""
    entries: list[Entry] = []
    number = 0
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        first = number + 1 + (len(block) - len(block.lstrip("\n")))
        number += block.count("\n") + 2
        entry = Entry(msgid="", line=first)
        target: str | None = None
        seen = False
        for raw in block.splitlines():
            line = raw.strip()
            if not line or line.startswith("#~"):
                continue
            if line.startswith("#,"):
                entry.flags |= {flag.strip() for flag in line[2:].split(",") if flag.strip()}
                continue
            if line.startswith("#"):
                continue
            match = _KEYWORD.match(line)
            if match:
                keyword, index, quoted = match.groups()
                seen = True
                if index is not None:
                    target = f"plural{index}"
                    entry.plurals[int(index)] = _unquote(quoted)
                else:
                    target = keyword
                    setattr(entry, keyword, _unquote(quoted))
            elif line.startswith('"') and target is not None:
                if target.startswith("plural"):
                    entry.plurals[int(target[6:])] += _unquote(line)
                else:
                    setattr(entry, target, (getattr(entry, target) or "") + _unquote(line))
            else:
                raise AssertionError(f"{path}:{first}: cannot read {raw!r}")
        if seen:
            entries.append(entry)

    head = [e for e in entries if e.msgid == "" and e.msgctxt is None]
    assert head, f"{path} has no header"
    header = {
        key.strip(): value.strip()
        for key, _sep, value in (line.partition(":") for line in head[0].msgstr.splitlines())
        if key
    }
    return header, [e for e in entries if e is not head[0]]


def test_the_po_reader_reads_contexts_plurals_flags_and_continuations(tmp_path: Path):
    sample = tmp_path / "sample.po"
    sample.write_text(
        'msgid ""\nmsgstr ""\n"Language: ru\\n"\n"Plural-Forms: nplurals=3; plural=0;\\n"\n\n'
        '#: a.py:1\n#, python-format\nmsgctxt "ctx"\nmsgid "A %(n)s"\nmsgstr ""\n"Б %(n)s"\n\n'
        '#, fuzzy\nmsgid "one"\nmsgid_plural "many"\nmsgstr[0] "x"\nmsgstr[1] ""\nmsgstr[2] "z"\n\n'
        '#~ msgid "old"\n#~ msgstr "старое"\n',
        encoding="utf-8",
    )

    header, entries = read_po(sample)

    assert header["Language"] == "ru"
    first, second = entries
    assert (first.msgctxt, first.msgid, first.msgstr) == ("ctx", "A %(n)s", "Б %(n)s")
    assert first.key == "ctx\x04A %(n)s" and "python-format" in first.flags
    assert second.msgid_plural == "many" and second.plurals == {0: "x", 1: "", 2: "z"}
    assert "fuzzy" in second.flags


# --- (a) the committed catalog is complete ------------------------------------------------------


def _where(entry: Entry) -> str:
    return f"{PO.name}:{entry.line} {entry.msgid[:70]!r}"


def test_russian_catalog_has_three_plural_forms():
    header, _entries = read_po(PO)

    assert header.get("Language") == "ru"
    assert f"nplurals={RUSSIAN_PLURALS};" in header.get("Plural-Forms", "").replace(" ", "")


def test_every_russian_entry_is_translated_and_none_is_fuzzy():
    _header, entries = read_po(PO)
    assert len(entries) > 100  # the catalog really was read

    problems = []
    for entry in entries:
        if "fuzzy" in entry.flags:
            problems.append(f"fuzzy: {_where(entry)}")
        if entry.msgid_plural is None:
            if not entry.msgstr.strip():
                problems.append(f"untranslated: {_where(entry)}")
            continue
        forms = [entry.plurals.get(n, "") for n in range(RUSSIAN_PLURALS)]
        if not all(form.strip() for form in forms) or len(entry.plurals) != RUSSIAN_PLURALS:
            problems.append(f"plural forms missing: {_where(entry)}")

    assert not problems, "Run `make messages` and translate:\n" + "\n".join(problems)


def test_translations_keep_every_placeholder():
    _header, entries = read_po(PO)
    placeholder = re.compile(r"%\(\w+\)[sd]|\{\w*\}")

    problems = []
    for entry in entries:
        wanted = sorted(placeholder.findall(entry.msgid))
        for text in [entry.msgstr] if entry.msgid_plural is None else entry.plurals.values():
            if sorted(placeholder.findall(text)) != wanted:
                problems.append(f"{_where(entry)} -> {text!r}")

    assert not problems, "\n".join(problems)


def test_the_committed_mo_is_compiled_from_the_committed_po():
    _header, entries = read_po(PO)
    with MO.open("rb") as handle:
        compiled: dict[Any, str] = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]

    expected: dict[Any, str] = {}
    for entry in entries:
        if entry.msgid_plural is None:
            expected[entry.key] = entry.msgstr
        else:
            for n, text in entry.plurals.items():
                expected[(entry.key, n)] = text
    compiled = {key: value for key, value in compiled.items() if key != ""}

    assert compiled == expected, "Run `make messages` (it compiles the .mo) and commit both files."


# --- (b) the catalog is current with the source --------------------------------------------------

GETTEXT_TOOLS = ("xgettext", "msgmerge", "msguniq", "msgattrib")


# Extraction stays with xgettext (through makemessages, as `make messages` does) rather than a
# Python imitation of it: this test must find exactly what the real tool would add to the .po.
@pytest.mark.gettext
@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in GETTEXT_TOOLS),
    reason="GNU gettext tools are not installed (apt-get install gettext)",
)
def test_every_translatable_string_in_the_source_is_in_the_committed_po(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
):
    # makemessages writes into every `locale` directory above the files it reads, so it runs on
    # a scratch copy of the source: the committed catalog is never touched.
    tree = tmp_path / "src"
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "sandbox")
    for part in ("b24app", "templates"):
        shutil.copytree(BASE_DIR / part, tree / part, ignore=junk)
    scratch = tree / "locale"
    (scratch / "ru" / "LC_MESSAGES").mkdir(parents=True)
    shutil.copy(PO, scratch / "ru" / "LC_MESSAGES" / "django.po")
    settings.LOCALE_PATHS = [scratch]
    monkeypatch.chdir(tree)

    call_command("makemessages", locale=["ru"], ignore_patterns=IGNORE, verbosity=0)

    _header, fresh = read_po(scratch / "ru" / "LC_MESSAGES" / "django.po")
    _header, committed = read_po(PO)
    known = {(entry.msgctxt, entry.msgid, entry.msgid_plural) for entry in committed}
    missing = [
        f"{entry.msgid!r}" + (f" (context {entry.msgctxt!r})" if entry.msgctxt else "")
        for entry in fresh
        if (entry.msgctxt, entry.msgid, entry.msgid_plural) not in known
    ]
    assert not missing, (
        "These strings are in the source but not in locale/ru/LC_MESSAGES/django.po; run "
        "`make messages`, translate them and commit the .po and .mo:\n" + "\n".join(missing)
    )


def test_without_gettext_the_catalog_check_fails_when_b24_require_names_it(tmp_path: Path):
    # No service is needed here, only a tool; CI installs it and must never pass on a skip.
    test = test_every_translatable_string_in_the_source_is_in_the_committed_po.__name__
    node = f"tests/{Path(__file__).name}::{test}"
    env = {**os.environ, "PATH": str(tmp_path), "B24_REQUIRE": "gettext"}

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", node],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "B24_REQUIRE names gettext but the test skipped" in result.stdout


# --- (c) pages follow the frame's language ------------------------------------------------------

MEMBER_ID = "c4a4b6d3710f85df22e9377d6c4f7000"
DOMAIN = "lang.bitrix24.com"


@pytest.fixture
def portal(db: Any) -> Portal:
    return Portal.objects.create(
        member_id=MEMBER_ID,
        domain=DOMAIN,
        client_endpoint=f"https://{DOMAIN}/rest/",
        server_endpoint="https://oauth.bitrix.info/rest/",
    )


def _composer(client: Client, portal: Portal, language: str) -> str:
    token = frame.issue_token(portal=portal, user_id=5, admin=True, language=language)
    response = client.get("/app/messages/", headers={frame.HEADER: token})
    assert response.status_code == 200
    return response.content.decode()


def _visible_text(html: str) -> str:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def test_the_composer_speaks_russian_for_a_russian_frame(client: Client, portal: Portal):
    html = _composer(client, portal, "ru")
    text = _visible_text(html)

    assert "Новое сообщение" in text
    assert "Отправить тест себе" in text
    assert "Открытые линии" in text or "Открытая линия" in text
    for english in ("New message", "Send a test to me", "Preview and sending", "Message text"):
        assert english not in text


def test_the_composer_speaks_english_for_any_other_language(client: Client, portal: Portal):
    text = _visible_text(_composer(client, portal, "en"))

    assert "Send a test to me" in text
    assert "Отправить" not in text


def test_the_entry_refusal_answers_in_the_lang_bitrix_asked_for(client: Client, db: Any):
    body = {"AUTH_ID": "a" * 32, "member_id": MEMBER_ID, "PLACEMENT": "DEFAULT"}

    russian = client.post(f"/b24/app/?DOMAIN={DOMAIN}&PROTOCOL=1&LANG=ru", body)
    english = client.post(f"/b24/app/?DOMAIN={DOMAIN}&PROTOCOL=1&LANG=de", body)

    assert russian.status_code == english.status_code == 403
    assert russian.content.decode() == "Приложение не установлено на этом портале."
    assert english.content.decode() == "The app is not installed on this Bitrix24."


# --- (d) every Bitrix24 error code has a friendly text in both languages -------------------------

SPEC_CODES = {
    # §2.3 OAuth server errors
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "insufficient_scope",
    "invalid_scope",
    "PAYMENT_REQUIRED",
    # §3.3 system errors
    "expired_token",
    "invalid_token",
    "NO_AUTH_FOUND",
    "METHOD_CONFIRM_WAITING",
    "METHOD_CONFIRM_DENIED",
    "ACCESS_DENIED",
    "INVALID_CREDENTIALS",
    "user_access_error",
    "WRONG_AUTH_TYPE",
    "ERROR_METHOD_NOT_FOUND",
    "ERROR_MANIFEST_IS_NOT_AVAILABLE",
    "INVALID_REQUEST",
    "ERROR_BATCH_LENGTH_EXCEEDED",
    "ERROR_BATCH_METHOD_NOT_ALLOWED",
    "OPERATION_TIME_LIMIT",
    "QUERY_LIMIT_EXCEEDED",
    "OVERLOAD_LIMIT",
    "INTERNAL_SERVER_ERROR",
    "ERROR_UNEXPECTED_ANSWER",
    "PORTAL_DELETED",
    "APPLICATION_NOT_FOUND",
    "CONNECTION_ERROR",
    "authorization_error",
    # §5.3 imopenlines.network.message.add, §5.8 imopenlines.network.join
    "CODE",
    "IMBOT_ERROR",
    "NOT_FOUND",
    "USER_ID_EMPTY",
    "USER_MESSAGE_LIMIT",
    "MESSAGE_EMPTY",
    "ATTACH_OVERSIZE",
    "ATTACH_ERROR",
    "KEYBOARD_ERROR",
    "WRONG_REQUEST",
    "INACTIVE",
    # names from the older documentation
    "CODE_ERROR",
    "KEYBOARD_OVERSIZE",
}

_CYRILLIC = re.compile("[а-яё]", re.IGNORECASE)


@pytest.mark.parametrize("code", sorted(SPEC_CODES))
def test_every_bitrix_error_code_has_a_friendly_text_in_both_languages(code: str):
    assert error_texts.is_known(code)
    with translation.override("en"):
        generic = error_texts.error_text("SOMETHING_NEVER_SENT")
        english = error_texts.error_text(code)
        english_label = error_texts.error_label(code)
    with translation.override("ru"):
        russian = error_texts.error_text(code)
        russian_label = error_texts.error_label(code)

    assert english and english != generic
    assert english != russian and _CYRILLIC.search(russian), f"{code} is not translated"
    assert not _CYRILLIC.search(english)
    assert f"({code})" in english_label and f"({code})" in russian_label


def test_an_unknown_code_gets_a_generic_sentence_with_the_code():
    with translation.override("ru"):
        label = error_texts.error_label("HTTP_418")

    assert label == "Битрикс24 вернул ошибку (HTTP_418)."
    assert not error_texts.is_known("HTTP_418")


def test_lower_case_oauth_codes_are_not_confused_with_their_upper_case_namesakes():
    with translation.override("en"):
        assert "HTTPS" in error_texts.error_text("INVALID_REQUEST")
        assert "HTTPS" not in error_texts.error_text("invalid_request")


def test_stored_errors_are_explained_by_their_leading_code():
    assert error_texts.code_of("NOT_FOUND: Line not found") == "NOT_FOUND"
    assert error_texts.code_of("  insufficient_scope") == "insufficient_scope"
    assert error_texts.code_of("") == ""
