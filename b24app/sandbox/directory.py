"""A portal's staff: nested departments and users, generated from a seed so every run is the same.

Users 1..5 are fixed so tests can name them: 1, 2 and 5 are admins, 3 and 4 ordinary employees;
6 is inactive and 7 is an extranet user. The rest are drawn from Russian and English name lists,
about 6 % inactive and 5 % extranet (extranet users belong to no department, as in Bitrix).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

__all__ = ["Department", "Directory", "User", "build_directory"]

FIXED_ADMINS = frozenset({1, 2, 5})
INACTIVE_USER_ID = 6
EXTRANET_USER_ID = 7

# fmt: off
_RU_MALE = ["Александр", "Дмитрий", "Максим", "Сергей", "Андрей", "Алексей", "Иван", "Михаил",
            "Никита", "Егор", "Павел", "Роман", "Олег", "Владимир", "Константин"]
_RU_FEMALE = ["Анна", "Мария", "Елена", "Ольга", "Наталья", "Татьяна", "Ирина", "Екатерина",
              "Светлана", "Юлия", "Дарья", "Ксения", "Алина", "Виктория", "Полина"]
_RU_LAST = ["Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов",
            "Новиков", "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров",
            "Павлов", "Козлов", "Степанов", "Николаев"]
_RU_PATRONYMIC_M = ["Александрович", "Сергеевич", "Игоревич", "Петрович", "Андреевич"]
_RU_PATRONYMIC_F = ["Александровна", "Сергеевна", "Игоревна", "Петровна", "Андреевна"]
_EN_MALE = ["James", "John", "Robert", "Michael", "William", "David", "Richard", "Thomas",
            "Daniel", "Matthew", "Oliver", "Harry", "George", "Jack", "Samuel"]
_EN_FEMALE = ["Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Susan", "Jessica", "Sarah",
              "Emily", "Olivia", "Sophie", "Charlotte", "Grace", "Amelia", "Lucy"]
_EN_LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson",
            "Taylor", "Clark", "Walker", "Wright", "Green", "Baker", "Hall", "Turner", "Cooper",
            "Ward", "Morris", "Bennett"]
_TRANSLIT = str.maketrans({
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z",
    "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
    "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh",
    "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu", "я": "ya",
})
_POSITIONS = ["Manager", "Senior Manager", "Engineer", "Senior Engineer", "Analyst", "Designer",
              "Accountant", "Specialist", "Team Lead", "Менеджер", "Инженер", "Аналитик",
              "Бухгалтер", "Специалист", "Руководитель группы"]
# fmt: on

# (id, name, parent id or 0, sort); a small company with two levels under the root.
_DEPARTMENTS = [
    (1, "Sandbox Company", 0, 100),
    (2, "Sales", 1, 200),
    (3, "Marketing", 1, 300),
    (4, "Development", 1, 400),
    (5, "Customer Support", 1, 500),
    (6, "Бухгалтерия", 1, 600),
    (7, "Отдел кадров", 1, 700),
    (8, "Sales — Moscow", 2, 210),
    (9, "Sales — Berlin", 2, 220),
    (10, "Backend", 4, 410),
    (11, "Frontend", 4, 420),
    (12, "Тестирование", 4, 430),
    (13, "Поддержка 1-й линии", 5, 510),
    (14, "Поддержка 2-й линии", 5, 520),
]


@dataclass
class Department:
    """One department (`department.get` row)."""

    id: int
    name: str
    parent: int
    sort: int
    head: int = 0

    def as_rest(self) -> dict[str, Any]:
        """The row as `department.get` returns it (ids as strings, SORT as int)."""
        row: dict[str, Any] = {"ID": str(self.id), "NAME": self.name, "SORT": self.sort}
        if self.parent:
            row["PARENT"] = str(self.parent)
        if self.head:
            row["UF_HEAD"] = str(self.head)
        return row


@dataclass
class User:
    """One portal user."""

    id: int
    name: str
    last_name: str
    second_name: str
    email: str
    gender: str
    position: str
    departments: list[int]
    active: bool = True
    user_type: str = "employee"
    admin: bool = False
    lang: str = "en"

    @property
    def full_name(self) -> str:
        """`NAME LAST_NAME` as the picker shows it."""
        return f"{self.name} {self.last_name}".strip()

    def as_rest(self) -> dict[str, Any]:
        """The row as `user.get` returns it (ID as string, ACTIVE as bool); a fresh copy."""
        return {**self.rest_row, "UF_DEPARTMENT": list(self.departments)}

    @cached_property
    def rest_row(self) -> dict[str, Any]:
        """The `user.get` row, built once; treat it as read-only."""
        return {
            "ID": str(self.id),
            "XML_ID": f"sandbox-{self.id}",
            "ACTIVE": self.active,
            "NAME": self.name,
            "LAST_NAME": self.last_name,
            "SECOND_NAME": self.second_name,
            "EMAIL": self.email,
            "LAST_LOGIN": "2026-11-20T09:00:00+00:00",
            "DATE_REGISTER": "2024-01-15T00:00:00+00:00",
            "IS_ONLINE": "N",
            "TIME_ZONE": "",
            "TIME_ZONE_OFFSET": "0",
            "PERSONAL_GENDER": self.gender,
            "PERSONAL_PHOTO": "",
            "PERSONAL_CITY": "",
            "WORK_POSITION": self.position,
            "UF_DEPARTMENT": list(self.departments),
            "USER_TYPE": self.user_type,
        }


@dataclass
class Directory:
    """All users and departments of one portal, with id indexes."""

    users: dict[int, User] = field(default_factory=dict)
    departments: dict[int, Department] = field(default_factory=dict)

    def user(self, user_id: int) -> User | None:
        """The user with that id, or None."""
        return self.users.get(user_id)

    def subdepartments(self, dept_id: int) -> set[int]:
        """`dept_id` and every department below it."""
        found = {dept_id}
        changed = True
        while changed:
            changed = False
            for dept in self.departments.values():
                if dept.parent in found and dept.id not in found:
                    found.add(dept.id)
                    changed = True
        return found


def _russian(rng: random.Random) -> tuple[str, str, str, str, str]:
    male = rng.random() < 0.5
    first = rng.choice(_RU_MALE if male else _RU_FEMALE)
    last = rng.choice(_RU_LAST) + ("" if male else "а")
    middle = rng.choice(_RU_PATRONYMIC_M if male else _RU_PATRONYMIC_F)
    return first, last, middle, "M" if male else "F", "ru"


def _english(rng: random.Random) -> tuple[str, str, str, str, str]:
    male = rng.random() < 0.5
    first = rng.choice(_EN_MALE if male else _EN_FEMALE)
    return first, rng.choice(_EN_LAST), "", "M" if male else "F", "en"


def _email(first: str, last: str, user_id: int, portal: int) -> str:
    local = f"{first}.{last}".lower().translate(_TRANSLIT).replace(" ", "")
    return f"{local}.{user_id}@portal{portal}.sandbox.test"


def build_directory(portal: int, users: int) -> Directory:
    """The deterministic directory of portal number `portal` with `users` users (at least 7)."""
    rng = random.Random(f"b24app-sandbox-directory-{portal}")
    directory = Directory()
    for dept_id, name, parent, sort in _DEPARTMENTS:
        directory.departments[dept_id] = Department(dept_id, name, parent, sort)
    leaf_ids = [d for d in directory.departments if d > 1]
    fixed: dict[int, tuple[str, str, str, str, str]] = {
        1: ("Alexander", "Sandbox", "", "M", "en"),
        2: ("Мария", "Петрова", "Ивановна", "F", "ru"),
        3: ("John", "Smith", "", "M", "en"),
        4: ("Иван", "Кузнецов", "Сергеевич", "M", "ru"),
        5: ("Emily", "Clark", "", "F", "en"),
        6: ("Олег", "Уволенный", "", "M", "ru"),
        7: ("Guest", "Partner", "", "M", "en"),
    }
    for user_id in range(1, max(users, 7) + 1):
        if user_id in fixed:
            first, last, middle, gender, lang = fixed[user_id]
        else:
            first, last, middle, gender, lang = (_russian if rng.random() < 0.5 else _english)(rng)
        user = User(
            id=user_id,
            name=first,
            last_name=last,
            second_name=middle,
            email=_email(first, last, user_id, portal),
            gender=gender,
            position=rng.choice(_POSITIONS),
            departments=[1] if user_id == 1 else [rng.choice(leaf_ids)],
            admin=user_id in FIXED_ADMINS,
            lang=lang,
        )
        if user_id == INACTIVE_USER_ID or (user_id > 7 and rng.random() < 0.06):
            user.active = False
        if user_id == EXTRANET_USER_ID or (user_id > 7 and rng.random() < 0.05):
            user.user_type = "extranet"
            user.departments = []
            user.position = "Partner"
        directory.users[user_id] = user
    # Heads: the first active employee found in each department.
    for dept in directory.departments.values():
        for user in directory.users.values():
            if user.active and user.user_type == "employee" and dept.id in user.departments:
                dept.head = user.id
                break
    return directory
