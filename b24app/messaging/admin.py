"""Django admin for messaging: read-mostly views for support staff of the app vendor.

Deliveries and the weekly ledger are records of what Bitrix24 was told and answered, so they are
read-only here; changing them by hand would break the "never send twice" guarantees.
"""

from __future__ import annotations

from django.contrib import admin

from b24app.messaging.models import Delivery, Draft, LimitEntry, Line, Template


@admin.register(Line)
class LineAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("__str__", "code", "portal", "join_status", "bot_id", "joined_at")
    list_filter = ("join_status",)
    search_fields = ("code", "name", "portal__domain")
    readonly_fields = ("portal", "code", "bot_id", "join_status", "join_error", "joined_at")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("pk", "portal", "line", "user_id", "kind", "status", "error_code", "created_at")
    list_filter = ("status", "kind")
    search_fields = ("portal__domain", "recipient_name", "error_code")
    date_hierarchy = "created_at"
    list_select_related = ("portal", "line")

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(LimitEntry)
class LimitEntryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("portal", "line_code", "user_id", "sent_at", "source")
    list_filter = ("source",)
    search_fields = ("portal__domain", "line_code")

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "portal", "created_by", "updated_at")
    search_fields = ("name", "portal__domain")


@admin.register(Draft)
class DraftAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("portal", "user_id", "updated_at")
    readonly_fields = ("portal", "user_id", "data", "updated_at")
