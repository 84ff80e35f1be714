"""The client's address: forwarded headers count only from trusted proxies."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from webapp.client_ip import client_ip


def _request(remote: str, forwarded: str | None = None):
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **meta)


def test_without_trusted_proxies_the_header_is_ignored(settings) -> None:
    settings.PREFLOOP_TRUSTED_PROXIES = []
    assert client_ip(_request("203.0.113.7", "198.51.100.1")) == "203.0.113.7"


def test_behind_a_trusted_proxy_the_client_is_the_address_it_saw(settings) -> None:
    settings.PREFLOOP_TRUSTED_PROXIES = ["10.0.0.0/8"]
    # The client claims 1.2.3.4; the proxy appended the address it really saw.
    assert client_ip(_request("10.0.0.2", "1.2.3.4, 198.51.100.9")) == "198.51.100.9"


def test_a_chain_of_trusted_proxies_is_skipped(settings) -> None:
    settings.PREFLOOP_TRUSTED_PROXIES = ["10.0.0.2", "10.0.0.3"]
    assert client_ip(_request("10.0.0.2", "198.51.100.9, 10.0.0.3")) == "198.51.100.9"


@pytest.mark.parametrize("header", ["", "not an address"])
def test_a_trusted_proxy_without_a_usable_header_is_the_client(settings, header: str) -> None:
    settings.PREFLOOP_TRUSTED_PROXIES = ["10.0.0.2"]
    assert client_ip(_request("10.0.0.2", header)) == (header or "10.0.0.2")
