"""PHP-style query strings: what Bitrix's `parse_str` makes of a form body, and the reverse.

Bitrix is PHP, so a form field named `ATTACH[BLOCKS][0][MESSAGE]` arrives at a method as a nested
array, and events leave the portal encoded the same way (`auth[access_token]=...`, spec §1.4). We
keep every key a string (PHP would turn `"0"` into an int); `b24app.messaging.payload` treats a
dict whose keys are `0..n-1` as a list, which is what PHP's arrays amount to.

Written here rather than taken from a library: the PyPI candidates (`querystring-parser`,
`php-query`) are unmaintained and differ from PHP on `[]` appends and on `.`/space in names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote_plus

__all__ = ["build_query", "parse_pairs", "parse_str", "php_bool", "php_json_map"]


def _next_index(container: dict[str, Any]) -> str:
    """The key PHP gives to `name[]`: one past the largest integer key (0 when there is none)."""
    ints = [int(k) for k in container if k.lstrip("-").isdigit()]
    return str(max(ints) + 1) if ints else "0"


def _split_name(name: str) -> tuple[str, list[str]] | None:
    """Split `a[b][][c]` into `("a", ["b", "", "c"])` the way PHP's variable registration does."""
    bracket = name.find("[")
    base = name if bracket < 0 else name[:bracket]
    # PHP turns spaces and dots in the top-level name into underscores.
    base = base.replace(" ", "_").replace(".", "_")
    if not base:
        return None
    parts: list[str] = []
    rest = "" if bracket < 0 else name[bracket:]
    while rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            # An unmatched "[": PHP keeps the rest in the top-level name with "_" for "[".
            if not parts:
                base = base + "_" + rest[1:]
            break
        parts.append(rest[1:close])
        rest = rest[close + 1 :]
    return base, parts


def _assign(target: dict[str, Any], name: str, value: Any) -> None:
    split = _split_name(name)
    if split is None:
        return
    base, parts = split
    if not parts:
        target[base] = value
        return
    node = target.get(base)
    if not isinstance(node, dict):
        node = {}
        target[base] = node
    for i, part in enumerate(parts):
        key = _next_index(node) if part == "" else part
        if i == len(parts) - 1:
            node[key] = value
            return
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child


def parse_pairs(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Fold already-decoded `(name, value)` pairs into nested dicts like PHP's `$_POST`."""
    result: dict[str, Any] = {}
    for name, value in pairs:
        _assign(result, name, value)
    return result


def parse_str(query: str) -> dict[str, Any]:
    """Decode a query string like PHP `parse_str`.

    `A[B][0][C]=x` gives `{"A": {"B": {"0": {"C": "x"}}}}`.

    Later duplicates win, `name[]` appends, `+` is a space, and pairs without a name are dropped.
    """
    pairs: list[tuple[str, str]] = []
    for chunk in query.split("&"):
        if not chunk:
            continue
        name, _, value = chunk.partition("=")
        pairs.append((unquote_plus(name), unquote_plus(value)))
    return parse_pairs(pairs)


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}[{key}]", item, out)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _flatten(f"{prefix}[{index}]", item, out)
    elif value is None:
        # http_build_query skips nulls.
        return
    elif value is True or value is False:
        out.append((prefix, "1" if value else "0"))
    else:
        out.append((prefix, str(value)))


def build_query(data: Mapping[str, Any]) -> str:
    """Encode nested data like PHP `http_build_query` (brackets percent-encoded, spaces as `+`)."""
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        _flatten(str(key), value, pairs)
    return "&".join(
        f"{quote(k, safe='')}={quote(v, safe='').replace('%20', '+')}" for k, v in pairs
    )


def php_bool(value: Any) -> bool:
    """PHP's `(bool)` cast: `""`, `"0"`, `0`, `[]`, null and false are false; `"false"` is true."""
    if isinstance(value, str):
        return value not in ("", "0")
    return bool(value)


def php_json_map(mapping: Mapping[Any, Any]) -> Any:
    """How `json_encode` shows a PHP array: a list when its keys are exactly 0..n-1, else an object.

    An empty map therefore becomes `[]`, as in batch replies (spec §3.4).
    """
    keys = list(mapping.keys())
    if all(str(k).isdigit() for k in keys) and [int(str(k)) for k in keys] == list(
        range(len(keys))
    ):
        return [mapping[k] for k in keys]
    return {str(k): v for k, v in mapping.items()}
