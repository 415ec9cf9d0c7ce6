"""A Django 5 ASGI app: urls, views and ``application`` (settings: tests/compat/apps/django_settings.py).

``/async/`` an async view; ``/sync/`` a sync view that queries sqlite (Django runs it in its
thread-sensitive executor); ``/empty/`` a 204 (CommonMiddleware adds ``Content-Length: 0``);
``/echo/`` a POST body; ``/stream/`` an async StreamingHttpResponse; ``/admin/`` the admin
site. Anything else is Django's 404.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.compat.apps.django_settings")  # before django.setup()

from django.core.asgi import get_asgi_application

application = get_asgi_application()  # django.setup(): before anything imports models

from django.contrib import admin  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


async def async_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"kind": "async", "q": request.GET.get("q", "")})


def sync_view(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 6 * 7")
        (answer,) = cursor.fetchone()
    return JsonResponse({"kind": "sync", "db": answer})


def empty_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=204)


async def stream_view(request: HttpRequest) -> StreamingHttpResponse:
    async def lines() -> AsyncIterator[bytes]:
        for n in range(5):
            yield f"line {n}\n".encode()

    return StreamingHttpResponse(lines(), content_type="text/plain")


@csrf_exempt
def echo_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"size": len(request.body), "content_type": request.content_type})


urlpatterns = [
    path("async/", async_view),
    path("sync/", sync_view),
    path("empty/", empty_view),
    path("echo/", echo_view),
    path("stream/", stream_view),
    path("admin/", admin.site.urls),
]
