"""redact / sanitize: every encoding of a secret leaves, ordinary text stays."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oneie_operator.providers.redaction import REDACTED, redact, sanitize, secret_forms

SECRET = "pa55 w0rd/with+odd=chars&more"
APP_PASSWORD = "abcd EFGH 1234 ijkl MNOP 5678"


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        json.dumps(SECRET)[1:-1],
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
        "".join(SECRET.split()),
    ],
)
def test_every_form_of_the_secret_is_removed(form: str) -> None:
    out = redact(f"before {form} after", [SECRET])
    assert form not in out
    assert out.startswith("before ") and out.endswith(" after")
    assert REDACTED in out


def test_basic_auth_forms_are_removed_with_or_without_the_scheme() -> None:
    for password in (APP_PASSWORD, "".join(APP_PASSWORD.split())):
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        for text in (f"Authorization: Basic {token}", f"header was {token}"):
            out = redact(text, [APP_PASSWORD])
            assert token not in out and password not in out


def test_scheme_values_are_removed_even_when_the_secret_is_unknown() -> None:
    out = redact("Authorization: Bearer eyJhbGciOi.J9.abc123 and apikey=sb_secret_Zx81", [])
    assert "eyJhbGciOi" not in out and "sb_secret_Zx81" not in out


def test_ordinary_words_after_scheme_names_stay() -> None:
    text = "Basic authentication failed; the bearer token is invalid"
    assert redact(text, ["unrelated-secret-value"]) == text


def test_short_values_are_not_searched_for() -> None:
    assert redact("admin logged in", ["admin"]) == "admin logged in"
    assert redact("x", [None, ""]) == "x"


def test_sanitize_redacts_removes_control_characters_and_truncates() -> None:
    text = f"line one\nline two\x1b[31m {SECRET} " + "z" * 500
    out = sanitize(text, [SECRET])
    assert SECRET not in out and "\n" not in out and "\x1b" not in out
    assert len(out) <= 300 and out.endswith("…")


def test_secret_forms_are_not_trivial() -> None:
    assert all(len(f) >= 6 for f in secret_forms("abcdefgh"))


@settings(max_examples=200, deadline=None)
@given(
    secret=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=40),
    before=st.text(max_size=30),
    after=st.text(max_size=30),
)
def test_property_the_secret_never_survives(secret: str, before: str, after: str) -> None:
    out = redact(before + secret + after, [secret])
    assert secret not in out
    b64 = base64.b64encode(secret.encode()).decode()
    assert b64 not in redact(f"{before} {b64} {after}", [secret])
