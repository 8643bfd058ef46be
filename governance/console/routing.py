from django.urls import path

from governance.console.consumers import ConsoleConsumer

websocket_urlpatterns = [path("ws/console", ConsoleConsumer.as_asgi())]
