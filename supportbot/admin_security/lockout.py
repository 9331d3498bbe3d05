"""The client address django-axes counts failed admin logins against."""

from django.http import HttpRequest

from supportbot.client_address import address_parse, client_bucket


def lockout_client_address(request: HttpRequest) -> str | None:
    """`REMOTE_ADDR`, which `ForwardedClientMiddleware` resolved through `TRUSTED_PROXIES`
    (forwarding headers are never read here). An IPv6 client is counted by its /64, written as
    the /64's first address (axes stores an address, not a network)."""
    address = request.META.get("REMOTE_ADDR") or ""
    if address_parse(address) is None:
        return None
    bucket = client_bucket(address)
    return bucket.split("/", 1)[0]
