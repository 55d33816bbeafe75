"""Composer and history URLs, mounted at /app/messages/ (all frame views)."""

from __future__ import annotations

from django.urls import path

from b24app.messaging import views

app_name = "messaging"

urlpatterns = [
    path("", views.compose, name="compose"),
    path("send/", views.send, name="send"),
    path("preview/", views.preview, name="preview"),
    path("attach/", views.attach, name="attach"),
    path("keyboard/", views.keyboard, name="keyboard"),
    path("recipient/", views.recipient, name="recipient"),
    path("recipient/search/", views.recipient_search, name="recipient_search"),
    path("lines/", views.lines, name="lines"),
    path("lines/<id:line_id>/join/", views.line_join, name="line_join"),
    path("draft/", views.draft, name="draft"),
    path("reset/", views.reset, name="reset"),
    path("templates/", views.template_save, name="template_save"),
    path("templates/<id:template_id>/load/", views.template_load, name="template_load"),
    path("templates/<id:template_id>/delete/", views.template_delete, name="template_delete"),
    path("history/", views.history, name="history"),
    path("history/<id:delivery_id>/", views.delivery, name="delivery"),
]
