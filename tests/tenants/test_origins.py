import pytest
from django.core.exceptions import ValidationError

from supportbot.tenants.origins import normalize_origin, normalize_origins, origin_allowed


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://Shop.Example.com", "https://shop.example.com"),
        ("https://shop.example.com:443/", "https://shop.example.com"),
        ("http://localhost:8001", "http://localhost:8001"),
        ("http://127.0.0.1:80", "http://127.0.0.1"),
        ("http://[::1]:8001", "http://[::1]:8001"),
        ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
    ],
)
def test_normalize_origin(raw: str, expected: str) -> None:
    assert normalize_origin(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "ftp://x.example",
        "shop.example.com",
        "https://shop.example.com/path",
        "https://",
        "javascript:alert(1)",
        "https://user@shop.example.com",
        "https://shop.example.com:99999",
        # An origin is written into the widget frame's CSP header: nothing that adds directives.
        "https://shop.example.com;script-src",
        "https://a.example;%20script-src%20*",
        "https://shop example.com",
        "https://shop.example.com'",
    ],
)
def test_not_an_origin(raw: str) -> None:
    with pytest.raises(ValidationError):
        normalize_origin(raw)


def test_origin_allowed_is_exact() -> None:
    allowed = normalize_origins(["https://shop.example.com", "https://shop.example.com/"])
    assert allowed == ["https://shop.example.com"]
    assert origin_allowed("https://SHOP.example.com", allowed)
    assert not origin_allowed("https://shop.example.com.evil.org", allowed)
    assert not origin_allowed("http://shop.example.com", allowed)
    assert not origin_allowed("null", allowed)
    assert not origin_allowed(None, allowed)
