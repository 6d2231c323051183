"""Who may use the local server, and from which web pages: the checks against DNS rebinding and against
other sites' pages (docs/serve.md: "Web pages and host names").

A server on 127.0.0.1 without an API key is reachable by every web page its user opens: a browser sends
a page's requests to any address, the user's own machine included. Three checks keep such pages out,
and the server applies them to every request before anything else:

1. Host. A site that points its own name at 127.0.0.1 (DNS rebinding) makes its pages same-origin with
   the server, but their requests still carry the site's name in Host. On a loopback address only
   loopback names (localhost, *.localhost, 127.0.0.0/8, ::1) and names given with --allow-host are
   served. On another address (which needs --api-key or --insecure) Host is checked only when
   --allow-host names what it may be: the machine's names are not known here, and the key guards it.
2. Origin. Browsers name the page behind every cross-origin request (and every same-origin POST) in
   Origin. A request that has one is served only if it comes from the server's own pages (the playground:
   Origin's host is the Host) or from an origin given with --allow-origin; those get CORS headers, and
   their preflights are answered. Clients that are not browsers send no Origin and are not affected.
3. Content type (server.py). A page may send some cross-origin POSTs without asking first (text/plain,
   a form), so the API reads only bodies sent as application/json, which a page can send elsewhere only
   after a preflight that the server answers for --allow-origin origins alone.
"""

from __future__ import annotations

import argparse
from ipaddress import ip_address
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback(host: str) -> bool:
    """Is `host` (a name or an address, IPv6 without brackets) this machine's loopback?"""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_name(name: str) -> bool:
    """A Host name that can only mean this machine: RFC 6761 reserves localhost and *.localhost for it."""
    return is_loopback(name) or name.endswith(".localhost")


def host_name(header: str) -> str | None:
    """The name in a Host header, without its port, in lower case and without a trailing dot; None when
    the header is not a host name or address with an optional port."""
    header = header.strip().lower()
    if header.startswith("["):  # an IPv6 address: [::1]:8080
        name, bracket, port = header[1:].partition("]")
        if not bracket or (port and not (port.startswith(":") and port[1:].isdigit())):
            return None
    else:
        name, colon, port = header.partition(":")
        if colon and not port.isdigit():
            return None
    name = name.rstrip(".")
    if not name or not name.isascii() or not all(c.isalnum() or c in "-._:" for c in name):
        return None
    return name


def normal_origin(text: str) -> str | None:
    """An origin as browsers write it in Origin (scheme://host[:port], lower case, no default port), or
    None when `text` is not one. "null" (a sandboxed page, a file) stays itself."""
    if text == "null":
        return text
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    if (
        parts.scheme not in DEFAULT_PORTS
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
    ):
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[parts.scheme] else "")


def origin_flag(text: str) -> str:
    """The argparse type of --allow-origin: an origin, "null", or "*" for any page."""
    found = "*" if text == "*" else normal_origin(text)
    if found is None:
        raise argparse.ArgumentTypeError(
            f"expected an origin such as https://app.example or "
            f"http://localhost:3000 (no path), 'null' or '*', got {text!r}"
        )
    return found


def host_flag(text: str) -> str:
    """The argparse type of --allow-host: a host name or address, without a port."""
    name = host_name(text)
    if name is None or name != text.strip().lower().strip("[]").rstrip("."):  # (it had a port)
        raise argparse.ArgumentTypeError(f"expected a host name or address without a port, got {text!r}")
    return name


class Access:
    """The Host and Origin checks of one server (see the module docstring)."""

    def __init__(self, listen_host: str, hosts=(), origins=()):
        self.hosts = set(hosts)
        self.checks_host = is_loopback(listen_host) or bool(self.hosts)
        self.hosts.add(listen_host.strip("[]").lower())
        self.origins = set(origins)

    def host_problem(self, header: str | None) -> tuple[int, str] | None:
        """(status, why) when a request's Host header is refused, else None."""
        if header is None:  # an HTTP/1.0 request (HTTP/1.1 needs one): no browser sends such a request
            return None
        name = host_name(header)
        if name is None:
            return 400, f"the Host header {header[:80]!r} is not a host name or address"
        if self.checks_host and not (loopback_name(name) or name in self.hosts):
            names = "".join(f", {h}" for h in sorted(self.hosts) if not is_loopback(h))
            return 403, (
                f"requests for the host {name!r} are refused: this server answers to localhost{names} and "
                f"loopback addresses (start it with --allow-host {name} to answer to that name too)"
            )
        return None

    def origin(self, origin: str | None, host: str | None) -> str:
        """What a request's Origin header makes it: "none" (no Origin: not a web page's cross-origin
        request), "same" (a page this server served), "allowed" (an --allow-origin page: it gets CORS
        headers) or "refused"."""
        if origin is None:
            return "none"
        found = normal_origin(origin)
        if found is not None and found != "null" and host is not None:
            if found == normal_origin(f"{urlsplit(found).scheme}://{host.strip()}"):
                return "same"
        if found is not None and (found in self.origins or "*" in self.origins):
            return "allowed"
        return "refused"
