"""The one way the server makes an HTTP request out: hand-offs to automation systems
(remediation.handoff) and the notices' webhook (governance.notices.delivery).

Whoever may type a URL into Warden (a supervisor's launch URL, an operator's webhook)
must not reach through it what only Warden's own network can reach. So every request:

- goes to an http(s) URL without credentials in it, and https only in production;
- resolves the host name once and checks every address it gets: loopback, link-local
  (169.254.169.254, the clouds' metadata service), private, unspecified, multicast,
  reserved and other non-global addresses, and IPv4 addresses hidden in IPv6 ones, are
  refused unless WARDEN_OUTBOUND_ALLOWED_NETWORKS names a network holding them;
- connects to the address that was checked, so DNS answering differently a moment later
  cannot move it, while TLS still verifies the certificate for the host name (SNI and
  the Host header are the name);
- never follows a redirect: a 3xx is the answer, nothing is sent again;
- has a timeout, and reads at most `limit` bytes of the answer.

Environment proxies (HTTPS_PROXY) are not used: the address checked is the one reached.
"""

import http.client
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import urllib3
from django.conf import settings
from django.core.exceptions import ValidationError
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util.ssl_match_hostname import CertificateError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOW_SETTING = "WARDEN_OUTBOUND_ALLOWED_NETWORKS"


class NotSent(Exception):
    """Nothing reached the receiver: the URL or its address is refused, the name does not
    resolve, or no connection was made. The message says why."""


class MaybeSent(Exception):
    """The connection was made and the request may have been taken (a timeout or a reset
    after it was sent): the receiver may have acted on it."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # at most the limit asked for
    location: str = ""  # where a 3xx pointed (never followed)

    @property
    def redirected(self) -> bool:
        return 300 <= self.status < 400


# -- the URL (also the field validator of the URLs people type) ------------------------


def url_problem(url: str) -> str:
    """Why `url` may not be requested ("" when it may); addresses are checked at send time,
    since DNS can change."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as error:
        return f"{url!r} is not a URL: {error}"
    if parts.scheme not in ("http", "https"):
        return "use an http:// or https:// URL"
    if parts.username is not None or parts.password is not None:
        return (
            "the URL may not carry credentials (user:password@): name the API token "
            "variable instead"
        )
    if not parts.hostname:
        return "the URL names no host"
    if settings.PRODUCTION and parts.scheme != "https":
        return "use an https:// URL: in production Warden sends nothing over plain http"
    return ""


def validate_outbound_url(url: str) -> None:
    """A model field's validator: a URL Warden may later send to."""
    problem = url_problem(url)
    if problem:
        raise ValidationError(problem, code="outbound_url")


# -- the addresses ----------------------------------------------------------------------


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in getattr(settings, ALLOW_SETTING, [])]


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    return [a for a in found if a is not None]


def _kind(address: IPAddress) -> str:
    """What makes `address` one Warden does not send to ("" for a global address)."""
    for embedded in _embedded_ipv4(address):
        kind = _kind(embedded)
        if kind:
            return f"{kind} (as {embedded})"
    for kind, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not a global address", not address.is_global),
    ):
        if flag:
            return kind
    return ""


def address_refusal(address: IPAddress) -> str:
    """Why Warden may not send to `address` ("" when it may)."""
    kind = _kind(address)
    if not kind:
        return ""
    candidates = [address, *_embedded_ipv4(address)]
    if any(a in network for network in allowed_networks() for a in candidates):
        return ""
    return f"{address} is {kind}; {ALLOW_SETTING} does not allow it"


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, once (raises NotSent if none)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise NotSent(f"{host} does not resolve: {error}") from error
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise NotSent(f"{host} does not resolve")
    return addresses


def checked_addresses(host: str, port: int) -> list[IPAddress]:
    """The addresses of `host`, each checked; NotSent if any of them is refused (a name
    that also resolves to an inside address is not trusted with the others)."""
    addresses = resolve(host, port)
    for address in addresses:
        why = address_refusal(address)
        if why:
            named = "" if _is_literal(host, address) else f"{host} resolves to {address}: "
            raise NotSent(f"refused: {named}{why}")
    return addresses


def _is_literal(host: str, address: IPAddress) -> bool:
    try:
        return ipaddress.ip_address(host) == address
    except ValueError:
        return False


# -- the request ------------------------------------------------------------------------


def _connection(
    parts: SplitResult, address: IPAddress, port: int, timeout: float
) -> HTTPConnection:
    if parts.scheme == "https":
        host = _ascii_host(parts.hostname or "")
        return HTTPSConnection(
            str(address),
            port,
            timeout=timeout,
            server_hostname=host,  # SNI, and the name the certificate must carry
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
        )
    return HTTPConnection(str(address), port, timeout=timeout)


def _ascii_host(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as error:
        raise NotSent(f"{host!r} is not a valid host name: {error}") from error


def _host_header(parts: SplitResult) -> str:
    host = _ascii_host(parts.hostname or "")
    if ":" in host:
        host = f"[{host}]"
    return host if parts.port is None else f"{host}:{parts.port}"


def _why(error: BaseException) -> str:
    """The underlying cause of a connection error, as `ConnectionRefusedError: ...`."""
    cause: BaseException = error
    while cause.__context__ is not None and isinstance(cause, urllib3.exceptions.HTTPError):
        cause = cause.__context__
    return f"{type(cause).__name__}: {cause}"


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, limit: int) -> Answer:
    """POST `body` to `url` under the rules above; the answer, whatever its status (a 3xx
    is not followed). Raises NotSent when nothing reached the receiver, MaybeSent when it
    may have."""
    problem = url_problem(url)
    if problem:
        raise NotSent(f"refused: {problem}")
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = checked_addresses(_ascii_host(parts.hostname or ""), port)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    errors = []
    for address in addresses:  # each checked; the first that takes a connection is used
        connection = _connection(parts, address, port, timeout)
        try:
            connection.connect()  # TCP, then TLS: the certificate must be the host name's
        except (urllib3.exceptions.HTTPError, OSError, CertificateError) as error:
            connection.close()
            errors.append(f"{address}: {_why(error)}")
            continue
        try:
            connection.request(
                "POST",
                target,
                body=body,
                headers={**headers, "Host": _host_header(parts)},
                preload_content=False,  # read no more than `limit` of the answer
            )
            response = connection.getresponse()
            data = response.read(limit)
            return Answer(response.status, data, response.headers.get("Location", ""))
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as error:
            raise MaybeSent(_why(error)) from error
        finally:
            connection.close()
    raise NotSent("; ".join(errors))
