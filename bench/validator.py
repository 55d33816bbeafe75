"""`validator`: validate_params on a ~30 KB ATTACH given as a JSON string, against json.loads.

The payload is the spec §5.5 example grown (more GRID items) until its serialised form is
between 29 000 and 30 000 bytes. The baseline is `json.loads` of the very same string, measured
in the same run, so the ratio says how much our validation costs beyond merely parsing it.
Target: ratio ≤ 5.
"""

from __future__ import annotations

import json
from typing import Any

from bench.common import per_call_seconds

EXAMPLE: dict[str, Any] = {
    "COLOR": "#29619b",
    "BLOCKS": [
        {"MESSAGE": "Release [b]2.4[/b] is out"},
        {"DELIMITER": {"SIZE": 200, "COLOR": "#c6c6c6"}},
        {
            "GRID": [
                {"DISPLAY": "LINE", "NAME": "Version", "VALUE": "2.4"},
                {"DISPLAY": "LINE", "NAME": "Date", "VALUE": "2026-11-25"},
            ]
        },
        {
            "LINK": {
                "NAME": "Changelog",
                "LINK": "https://example.com/changelog",
                "DESC": "What changed",
            }
        },
        {
            "IMAGE": [
                {
                    "LINK": "https://example.com/a.png",
                    "PREVIEW": "https://example.com/a_s.png",
                    "WIDTH": 1000,
                    "HEIGHT": 638,
                }
            ]
        },
        {"FILE": [{"LINK": "https://example.com/guide.pdf", "NAME": "guide.pdf", "SIZE": 1500000}]},
        {
            "USER": {
                "NAME": "Support team",
                "AVATAR": "https://example.com/logo.png",
                "LINK": "https://example.com",
            }
        },
    ],
}


def grown_attach(low: int = 29_000, high: int = 30_000) -> str:
    """The example with extra GRID rows until its JSON is between `low` and `high` bytes."""
    attach = json.loads(json.dumps(EXAMPLE))
    grid = attach["BLOCKS"][2]["GRID"]
    n = 0
    while True:
        text = json.dumps(attach, ensure_ascii=False)
        size = len(text.encode())
        if size >= low:
            break
        n += 1
        grid.append({"DISPLAY": "LINE", "NAME": f"Item {n}", "VALUE": f"value {n} [b]ok[/b]"})
    while len(json.dumps(attach, ensure_ascii=False).encode()) > high:
        grid.pop()
    return json.dumps(attach, ensure_ascii=False)


def run(env: object = None, only: set[str] | None = None) -> dict[str, Any]:
    from b24app.messaging import payload

    text = grown_attach()
    params = {
        "CODE": "ab515f5d85a8b844d484f6ea75a2e494",
        "USER_ID": 2,
        "MESSAGE": "message text",
        "ATTACH": text,
        "URL_PREVIEW": "Y",
    }
    problems = payload.validate_params(params)
    validate_s = per_call_seconds(lambda: payload.validate_params(params))
    loads_s = per_call_seconds(lambda: json.loads(text))
    return {
        "validator": {
            "attach_bytes": len(text.encode()),
            "problems": [p.code for p in problems],
            "validate_params_us": round(validate_s * 1e6, 1),
            "json_loads_us": round(loads_s * 1e6, 1),
            "ratio": round(validate_s / loads_s, 2),
            "target": "ratio <= 5",
        }
    }
