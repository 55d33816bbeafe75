"""Django admin: read-mostly views for operators; all changes go through the services."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from b24app.campaigns import services
from b24app.campaigns.models import Campaign, CampaignSettings, Exclusion, Lane


def _operator(request: HttpRequest) -> str:
    return f"operator {request.user.get_username()}"


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "portal", "status", "created_at", "started_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("name", "portal__domain")
    readonly_fields = [f.name for f in Campaign._meta.fields]
    actions = ["pause", "resume"]

    @admin.action(description="Pause the selected campaigns")
    def pause(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        for campaign in queryset:
            services.campaign_pause(campaign=campaign, actor_name=_operator(request))

    @admin.action(description="Resume the selected paused or blocked campaigns")
    def resume(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        for campaign in queryset:
            try:
                services.campaign_resume(campaign=campaign, actor_name=_operator(request))
            except services.CampaignError as exc:
                self.message_user(request, f"{campaign}: {exc.message}")


@admin.register(CampaignSettings)
class CampaignSettingsAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("portal", "time_zone", "single_calls", "single_calls_since")


@admin.register(Exclusion)
class ExclusionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("portal", "user_id", "note", "created_at")
    search_fields = ("portal__domain",)


@admin.register(Lane)
class LaneAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("portal", "slot", "token", "lease_until", "holder", "updated_at")
    readonly_fields = ("portal", "slot", "token", "lease_until", "holder", "wake", "updated_at")
