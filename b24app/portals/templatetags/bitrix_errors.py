"""Template filters that explain a Bitrix24 error code (see `b24app.portals.error_texts`).

    {% load bitrix_errors %}
    {{ delivery.error_code|error_text }}   -> the friendly sentence
    {{ line.join_error|error_label }}      -> the sentence with the code: "… (NOT_FOUND)."

Both accept a bare code or a stored "CODE: description" string.
"""

from __future__ import annotations

from django import template

from b24app.portals import error_texts

register = template.Library()


@register.filter
def error_text(value: object) -> str:
    return error_texts.error_text(error_texts.code_of(str(value or "")))


@register.filter
def error_label(value: object) -> str:
    return error_texts.error_label(error_texts.code_of(str(value or "")))
