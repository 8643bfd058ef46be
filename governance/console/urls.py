"""The console's controls (controls.py), under /console/."""

from django.urls import path

from governance.console import views as controls

urlpatterns = [
    path("pauses", controls.pause, name="console-pause"),
    path("pauses/preview", controls.pause_preview_view, name="console-pause-preview"),
    path("pauses/<int:pk>/resume", controls.resume, name="console-resume"),
    path("executions/<int:pk>/rollback", controls.roll_back, name="console-rollback"),
    path("tickets/<str:ticket_id>/override", controls.override, name="console-override"),
]
