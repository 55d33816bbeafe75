"""Who a campaign is for: the audience description, CSV parsing, department trees, placeholders.

Pure code (no ORM, no HTTP), so the rules are cheap to test.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

KINDS = ("users", "departments", "all", "csv")
USER_TYPES = ("employee", "extranet", "email")
# A CSV upload travels in a request of at most CSV_BODY_LIMIT bytes (README: "CSV uploads 2 MB";
# larger bodies get 413 from portals.middleware). The file itself may use all of it but the room
# the rest of the form needs (message, ATTACH and KEYBOARD of up to 30 000 bytes each), so a file
# up to CSV_MAX_BYTES gets per-line checks and one too big a clear form error, never a 413.
CSV_BODY_LIMIT = 2_000_000
CSV_MAX_BYTES = 1_900_000
CSV_MAX_IDS = 200_000
# The ids one user.get sub-call asks for: one page (50) answers all of them.
IDS_PER_CALL = 50

PLACEHOLDERS = ("{NAME}", "{LAST_NAME}")


@dataclass(frozen=True)
class Audience:
    """The stored description of a campaign's recipients (Campaign.audience)."""

    kind: str
    user_ids: tuple[int, ...] = ()
    department_ids: tuple[int, ...] = ()
    subdepartments: bool = True
    user_types: tuple[str, ...] = ("employee",)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "user_ids": list(self.user_ids),
            "department_ids": list(self.department_ids),
            "subdepartments": self.subdepartments,
            "user_types": list(self.user_types),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Audience:
        kind = str(data.get("kind") or "users")
        return cls(
            kind=kind if kind in KINDS else "users",
            user_ids=tuple(int(x) for x in data.get("user_ids") or ()),
            department_ids=tuple(int(x) for x in data.get("department_ids") or ()),
            subdepartments=bool(data.get("subdepartments", True)),
            user_types=tuple(
                t for t in (data.get("user_types") or ("employee",)) if t in USER_TYPES
            )
            or ("employee",),
        )

    @property
    def explicit(self) -> bool:
        """Users named one by one: their type is accepted as chosen (extranet included)."""
        return self.kind in ("users", "csv")


def unique_ids(values: Iterable[int]) -> list[int]:
    """Positive ids in first-seen order, duplicates removed."""
    seen: set[int] = set()
    out: list[int] = []
    for value in values:
        if value > 0 and value not in seen:
            seen.add(value)
            out.append(value)
    return out


_ID_SPLIT = re.compile(r"[\s,;]+")
# Bitrix user and department ids fit a 32-bit signed integer, as do our database columns.
MAX_ID = 2_147_483_647


def _is_id(token: str) -> bool:
    return token.isdigit() and 0 < int(token) <= MAX_ID


def parse_id_list(text: str) -> tuple[list[int], list[str]]:
    """`1, 2 3;4` → ([1, 2, 3, 4], bad tokens)."""
    ids: list[int] = []
    bad: list[str] = []
    for token in _ID_SPLIT.split(text.strip()):
        if not token:
            continue
        if _is_id(token):
            ids.append(int(token))
        else:
            bad.append(token[:40])
    return unique_ids(ids), bad


@dataclass
class CsvResult:
    """User ids from a CSV upload, and one error per bad line (line number, text, reason)."""

    ids: list[int] = field(default_factory=list)
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    duplicates: int = 0


_HEADER_NAMES = {"id", "user_id", "userid", "user id", "ид", "id пользователя"}


def csv_parse(data: bytes) -> CsvResult:
    """Read user ids from the first column of a CSV file (one per line, header optional).

    Separators `,` `;` or tab; a UTF-8 BOM is ignored. Every line that is not a positive whole
    number is reported with its number, so the uploader can fix the file.
    """
    result = CsvResult()
    if len(data) > CSV_MAX_BYTES:
        result.errors.append(
            (0, "", _("The file is larger than %(n)d KB.") % {"n": CSV_MAX_BYTES // 1000})
        )
        return result
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1251")
        except UnicodeDecodeError:
            result.errors.append((0, "", _("The file is not text (UTF-8 or Windows-1251).")))
            return result
    seen: set[int] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        cell = re.split(r"[,;\t]", line, maxsplit=1)[0].strip().strip('"').strip()
        if number == 1 and cell.lower() in _HEADER_NAMES:
            continue
        if not _is_id(cell):
            result.errors.append((number, line[:60], _("not a user ID (a positive number)")))
            continue
        value = int(cell)
        if value in seen:
            result.duplicates += 1
            continue
        seen.add(value)
        result.ids.append(value)
        if len(result.ids) > CSV_MAX_IDS:
            result.errors.append(
                (
                    number,
                    "",
                    ngettext("more than %(n)d user", "more than %(n)d users", CSV_MAX_IDS)
                    % {"n": CSV_MAX_IDS},
                )
            )
            break
    if not result.ids and not result.errors:
        result.errors.append((0, "", _("The file holds no user IDs.")))
    return result


def department_closure(
    chosen: Iterable[int], parents: Mapping[int, int | None], *, subdepartments: bool
) -> list[int]:
    """The chosen departments plus, optionally, every department below them (`PARENT` links)."""
    selected = unique_ids(chosen)
    if not subdepartments:
        return selected
    children: dict[int, list[int]] = {}
    for dept, parent in parents.items():
        if parent:
            children.setdefault(parent, []).append(dept)
    out: list[int] = []
    seen: set[int] = set()
    stack = list(reversed(selected))
    while stack:
        current = stack.pop()
        if current in seen:
            continue  # a cycle in PARENT links must not loop forever
        seen.add(current)
        out.append(current)
        stack.extend(sorted(children.get(current, ()), reverse=True))
    return out


@dataclass
class DepartmentNode:
    """One department of the picker's tree, with the departments right below it."""

    id: int
    name: str
    children: list[DepartmentNode] = field(default_factory=list)


def department_tree(
    departments: Iterable[tuple[int, str, int | None, int]],
) -> list[DepartmentNode]:
    """Nest `(id, name, parent, sort)` rows by their PARENT links, siblings by SORT then name.

    A department whose parent is not in the list is shown at the top; PARENT links that form a
    cycle are broken where the walk finds them, so every department appears exactly once.
    """
    rows = {dept_id: (name, parent, sort) for dept_id, name, parent, sort in departments}
    nodes = {
        dept_id: DepartmentNode(dept_id, name or str(dept_id))
        for dept_id, (name, *_r) in rows.items()
    }
    children: dict[int | None, list[int]] = {}
    for dept_id, (_name, parent, _sort) in rows.items():
        key = parent if parent in rows and parent != dept_id else None
        children.setdefault(key, []).append(dept_id)

    def order(ids: list[int]) -> list[int]:
        return sorted(ids, key=lambda d: (rows[d][2], rows[d][0].casefold(), d))

    placed: set[int] = set()

    def attach(dept_id: int) -> DepartmentNode:
        placed.add(dept_id)
        node = nodes[dept_id]
        for child in order(children.get(dept_id, [])):
            if child not in placed:
                node.children.append(attach(child))
        return node

    roots = [attach(d) for d in order(children.get(None, []))]
    # Departments only reachable through a cycle: start from the smallest id of each.
    for dept_id in sorted(rows):
        if dept_id not in placed:
            roots.append(attach(dept_id))
    return roots


def _name_part(value: str) -> str:
    # Square brackets would let a user's own name inject BB codes ([url=…]) into everyone's
    # message; Bitrix has no escape for them, so they are replaced by round ones.
    return value.replace("[", "(").replace("]", ")").strip()


def personalise(text: str, *, name: str, last_name: str) -> str:
    """Fill `{NAME}` and `{LAST_NAME}` for one recipient."""
    if "{" not in text:
        return text
    return text.replace("{NAME}", _name_part(name)).replace("{LAST_NAME}", _name_part(last_name))


def has_placeholders(text: str) -> bool:
    return any(p in text for p in PLACEHOLDERS)
