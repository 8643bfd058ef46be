"""Agents authenticate with their host's API key: `Authorization: Bearer KEY`."""

from dataclasses import dataclass
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from remediation.models import Host, hash_api_key


@dataclass(frozen=True)
class AgentPrincipal:
    """request.user for an agent: authenticated, but not a person."""

    host: Host
    is_authenticated: bool = True
    is_staff: bool = False

    def get_username(self) -> str:
        return f"agent:{self.host.name}"


def host_for_request(request) -> Host | None:
    """The enabled host whose key the request's `Authorization: Bearer KEY` carries.

    None without a bearer header; raises AuthenticationFailed for a bad or unknown key
    or a disabled host. Works on a Django or a DRF request.
    """
    return host_for_authorization(authentication.get_authorization_header(request))


def host_for_authorization(header: bytes, hosts: Any = None) -> Host | None:
    """host_for_request for the raw Authorization header (the long poll reads it from ASGI).

    `hosts` is the queryset to look in (the long poll annotates it), by default all.
    """
    parts = header.split()
    if not parts or parts[0].lower() != b"bearer":
        return None
    if len(parts) != 2:
        raise exceptions.AuthenticationFailed("Authorization must be 'Bearer <key>'.")
    try:
        key = parts[1].decode()
    except UnicodeDecodeError as exc:
        raise exceptions.AuthenticationFailed("The API key is not valid text.") from exc
    try:
        # Every agent request comes here; the allow-list is read only when a decision or
        # the allow-list endpoint needs it, so it is not decoded on every post and poll.
        hosts = (Host.objects if hosts is None else hosts).defer("allowlist")
        host = hosts.get(api_key_hash=hash_api_key(key))
    except Host.DoesNotExist:
        raise exceptions.AuthenticationFailed("Unknown API key.") from None
    if not host.enabled:
        raise exceptions.AuthenticationFailed(f"Host {host.name} is disabled.")
    return host


class HostKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        host = host_for_request(request)
        return None if host is None else (AgentPrincipal(host), host)

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="warden"'


class IsAgent(permissions.BasePermission):
    message = "This endpoint is for host agents."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, Host)


class HostKeyScheme(OpenApiAuthenticationExtension):
    """Documents the agent key in the OpenAPI schema as a bearer token."""

    target_class = HostKeyAuthentication
    name = "hostKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The host's API key, printed once by `manage.py add_host`.",
        }
