"""Agents authenticate with their host's API key: `Authorization: Bearer KEY`.

Every agent request comes here, so the key's host is read with one prepared statement
written once per process (host_by_key_hash), not a queryset compiled per request: the
ORM spent more CPU building that query than PostgreSQL spent answering it. The row is
read afresh on every request, so a key replaced or a host disabled stops working at once.
"""

import functools
from collections.abc import Callable, Collection
from dataclasses import dataclass

from django.db import connection
from django.db.models.expressions import Col
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


def host_for_authorization(header: bytes) -> Host | None:
    """host_for_request for the raw Authorization header (the long poll reads it from ASGI)."""
    key = bearer_key(header)
    if key is None:
        return None
    return enabled_host(host_by_key_hash(hash_api_key(key)))


def bearer_key(header: bytes) -> str | None:
    """The key in an `Authorization: Bearer KEY` header; None without a bearer header.
    Raises AuthenticationFailed for a malformed one."""
    parts = header.split()
    if not parts or parts[0].lower() != b"bearer":
        return None
    if len(parts) != 2:
        raise exceptions.AuthenticationFailed("Authorization must be 'Bearer <key>'.")
    try:
        return parts[1].decode()
    except UnicodeDecodeError as exc:
        raise exceptions.AuthenticationFailed("The API key is not valid text.") from exc


def enabled_host(host: Host | None) -> Host:
    """`host`, if a key found it and it is enabled; else AuthenticationFailed saying why."""
    if host is None:
        raise exceptions.AuthenticationFailed("Unknown API key.")
    if not host.enabled:
        raise exceptions.AuthenticationFailed(f"Host {host.name} is disabled.")
    return host


@dataclass(frozen=True)
class _KeyLookup:
    sql: str
    attnames: list[str]
    columns: tuple[Col, ...]
    converters: tuple[tuple[Callable, ...], ...]


@functools.cache
def _key_lookup(vendor: str) -> _KeyLookup:
    """The statement reading a host by its key's hash (every column but the allow-list,
    read only when a decision or the allow-list endpoint needs it), and each column's
    converters from the database's values, as the ORM applies them."""
    fields = [field for field in Host._meta.concrete_fields if field.name != "allowlist"]
    quote = connection.ops.quote_name
    sql = (
        f"SELECT {', '.join(quote(field.column) for field in fields)} "
        f"FROM {quote(Host._meta.db_table)} "
        f"WHERE {quote(Host._meta.get_field('api_key_hash').column)} = %s"
    )
    columns = tuple(field.get_col(Host._meta.db_table) for field in fields)
    converters = tuple(
        tuple(connection.ops.get_db_converters(column) + column.get_db_converters(connection))
        for column in columns
    )
    return _KeyLookup(sql, [field.attname for field in fields], columns, converters)


def host_by_key_hash(key_hash: str) -> Host | None:
    """The host whose key hashes to `key_hash` (remediation.models.hash_api_key), or None."""
    lookup = _key_lookup(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(lookup.sql, [key_hash])
        row = cursor.fetchone()
    if row is None:
        return None
    values = []
    for value, column, converters in zip(row, lookup.columns, lookup.converters, strict=True):
        for convert in converters:
            value = convert(value, column, connection)
        values.append(value)
    return Host.from_db(connection.alias, lookup.attnames, values)


def hosts_by_key_hashes(key_hashes: Collection[str]) -> dict[str, tuple[int, str, bool]]:
    """{key hash: (host id, name, enabled)} of the hosts whose keys hash to `key_hashes`, in
    one query (the long poll's first looks, gathered: remediation.api.long_poll)."""
    rows = Host.objects.filter(api_key_hash__in=list(key_hashes)).values_list(
        "api_key_hash", "pk", "name", "enabled"
    )
    return {key_hash: (pk, name, enabled) for key_hash, pk, name, enabled in rows}


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
