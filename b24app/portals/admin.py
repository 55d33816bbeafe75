from __future__ import annotations

from django.contrib import admin

from b24app.portals.models import Portal


@admin.register(Portal)
class PortalAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("domain", "member_id", "status", "language", "installed_at", "expires_at")
    list_filter = ("status", "language")
    search_fields = ("domain", "member_id")
    # Tokens are never shown, not even encrypted.
    exclude = ("access_token", "refresh_token", "application_token_hash")
    readonly_fields = (
        "member_id",
        "domain",
        "client_endpoint",
        "server_endpoint",
        "expires_at",
        "scope",
        "installed_at",
        "uninstalled_at",
        "token_refreshed_at",
    )
