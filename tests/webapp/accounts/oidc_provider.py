"""A little OpenID Connect provider on 127.0.0.1, for the single sign-on tests.

It serves what allauth's ``openid_connect`` provider reads: the discovery
document, an authorization endpoint that signs the configured person in at once
and redirects back with a code, a token endpoint (client secret and PKCE
checked) that answers with an RS256-signed ID token, userinfo, and the JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

KID = "test-key"


@dataclass
class Person:
    sub: str
    email: str
    preferred_username: str
    name: str = "Test Person"
    email_verified: bool = True


@dataclass
class OidcProvider:
    client_id: str
    client_secret: str
    person: Person
    issuer: str = ""
    codes: dict[str, dict] = field(default_factory=dict)
    token_requests: int = 0

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OidcProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- what the endpoints answer ---------------------------------------------

    def discovery(self) -> dict:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
        }

    def jwks(self) -> dict:
        numbers = self._key.public_key().public_numbers()

        def b64(value: int) -> str:
            raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        key = {"kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256", "n": b64(numbers.n), "e": b64(numbers.e)}
        return {"keys": [key]}

    def authorize(self, query: dict[str, str]) -> str:
        """The redirect back to the client, with a fresh code for ``self.person``."""
        assert query["client_id"] == self.client_id and query["response_type"] == "code"
        code = secrets.token_urlsafe(16)
        self.codes[code] = query
        params = {"code": code, "state": query["state"]}
        return f"{query['redirect_uri']}?{urlencode(params)}"

    def token(self, form: dict[str, str], basic: str | None) -> tuple[int, dict]:
        self.token_requests += 1
        if basic:
            client_id, _, secret = base64.b64decode(basic).decode().partition(":")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        asked = self.codes.pop(form.get("code", ""), None)
        if client_id != self.client_id or secret != self.client_secret or asked is None:
            return 400, {"error": "invalid_grant"}
        if asked.get("code_challenge"):
            verifier = form.get("code_verifier", "").encode()
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
            if challenge != asked["code_challenge"]:
                return 400, {"error": "invalid_grant", "error_description": "PKCE"}
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": self.person.sub,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "email": self.person.email,
            "email_verified": self.person.email_verified,
            "preferred_username": self.person.preferred_username,
        }
        if asked.get("nonce"):
            claims["nonce"] = asked["nonce"]
        id_token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": KID})
        return 200, {"access_token": "at-" + secrets.token_urlsafe(8), "token_type": "Bearer", "id_token": id_token}

    def userinfo(self) -> dict:
        p = self.person
        return {
            "sub": p.sub,
            "email": p.email,
            "email_verified": p.email_verified,
            "preferred_username": p.preferred_username,
            "name": p.name,
        }


def _handler(provider: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/.well-known/openid-configuration":
                self._json(200, provider.discovery())
            elif url.path == "/jwks":
                self._json(200, provider.jwks())
            elif url.path == "/userinfo":
                self._json(200, provider.userinfo())
            elif url.path == "/authorize":
                self.send_response(302)
                self.send_header("Location", provider.authorize(query))
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if urlsplit(self.path).path != "/token":
                self._json(404, {"error": "not_found"})
                return
            auth = self.headers.get("Authorization", "")
            status, body = provider.token(form, auth.removeprefix("Basic ") if auth.startswith("Basic ") else None)
            self._json(status, body)

    return Handler
