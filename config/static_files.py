"""WhiteNoise as middleware that serves both Django's ways: sync (WSGI) and async (ASGI).

WhiteNoise 6's middleware is sync-only. In an ASGI stack one sync-only middleware
makes Django run everything beneath it in a thread, so every request hops threads
and an async view (the agents' long poll) would hold a thread for as long as it
waits. This subclass keeps WhiteNoise's file lookup and serving, and under ASGI
hands only the static files themselves to a thread.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        super().__init__(get_response)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        static_file = (
            self.find_file(request.path_info)
            if self.autorefresh
            else self.files.get(request.path_info)
        )
        if static_file is not None:
            return await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        return await self.get_response(request)
