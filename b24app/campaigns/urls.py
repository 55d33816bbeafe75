from __future__ import annotations

from django.urls import path

from b24app.campaigns import status, views

app_name = "campaigns"

urlpatterns = [
    path("", views.campaign_list, name="list"),
    path("new/", views.campaign_new, name="new"),
    path("settings/", views.campaign_settings, name="settings"),
    path("departments/", views.campaign_departments, name="departments"),
    path("status-details/", status.status_details, name="status_details"),
    path("download/<str:token>/", views.campaign_download, name="download"),
    path("<id:pk>/", views.campaign_detail, name="detail"),
    path("<id:pk>/state/", views.campaign_state, name="state"),
    path("<id:pk>/preview/", views.campaign_preview, name="preview"),
    path("<id:pk>/skipped/", views.campaign_skipped, name="skipped"),
    path("<id:pk>/action/", views.campaign_action, name="action"),
    path("<id:pk>/report/", views.campaign_report, name="report"),
    path("<id:pk>/recipients/", views.campaign_recipients, name="recipients"),
    path("<id:pk>/export/", views.campaign_export, name="export"),
]
