"""A URL converter for database ids: digits that fit the id column, else no match (404).

Django's `<int:…>` accepts any length of digits; on Postgres an id past 2**31 - 1 then fails
inside the query (integer out of range) and would surface as a 500.
"""

from __future__ import annotations

MAX_ID = 2_147_483_647


class DbId:
    regex = "[0-9]{1,10}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 0 < number <= MAX_ID:
            raise ValueError("not a valid id")
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))
