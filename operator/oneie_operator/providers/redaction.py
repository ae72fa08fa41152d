"""Remove credentials from text that came from outside (provider answers, exception messages).

:func:`redact` replaces every secret value in the forms it can take on the wire or in an echo:

* the value itself, with and without its whitespace (WordPress application passwords are shown
  as ``abcd efgh ...`` and sent without spaces), JSON-escaped, and escaped as Python's ``repr`` of
  the text or of its bytes prints it (``b'...\\x0c...'`` in a parser's error message);
* URL-encoded (``quote`` and ``quote_plus``);
* base64 (standard and URL-safe alphabets, with and without padding);
* any base64 token whose decoded bytes contain a secret (``Basic base64(user:password)`` and
  friends), and any ``Authorization``-style value after ``Basic``/``Bearer``/``Convex``.

:func:`sanitize` is what error messages use: redact, drop control characters, truncate.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "[REDACTED]"
#: Secrets shorter than this are not searched for (they would match everywhere); no real
#: credential of the built-in providers is anywhere near this short.
MIN_SECRET_LENGTH = 6
DEFAULT_MAX_LENGTH = 300

_AUTH_SCHEME = re.compile(r"(?i)\b(basic|bearer|convex|token|apikey)(\s+|=|:\s*)([A-Za-z0-9+/=._~|:%-]{8,})")
_B64_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def _b64_forms(value: bytes) -> set[str]:
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(value).decode("ascii")
        forms.add(encoded)
        forms.add(encoded.rstrip("="))
    return forms


def secret_forms(secret: str) -> set[str]:
    """Every textual form of ``secret`` that :func:`redact` removes."""
    variants = {secret, "".join(secret.split())}
    forms: set[str] = set()
    for v in variants:
        if len(v) < MIN_SECRET_LENGTH:
            continue
        forms.add(v)
        forms.add(json.dumps(v)[1:-1])
        forms.add(repr(v)[1:-1])
        forms.add(ascii(v)[1:-1])
        forms.add(repr(v.encode("utf-8"))[2:-1])
        forms.add(quote(v, safe=""))
        forms.add(quote_plus(v))
        forms |= _b64_forms(v.encode("utf-8"))
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def _decodes_to_secret(token: str, plain: Iterable[str]) -> bool:
    candidate = token.rstrip("=")
    padded = candidate + "=" * (-len(candidate) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            text = decode(padded).decode("utf-8", errors="ignore")
        except (binascii.Error, ValueError):
            continue
        if any(p in text for p in plain):
            return True
    return False


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every form of every secret (see module doc) replaced by ``[REDACTED]``."""
    plain = sorted(
        {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        | {"".join(s.split()) for s in secrets if s and len("".join(s.split())) >= MIN_SECRET_LENGTH},
        key=len,
        reverse=True,
    )
    out = text
    # Every form of a secret is at least as long as the secret without its whitespace: a shorter
    # text (a version string, a name) cannot hold one, and the forms need not be computed.
    if plain and len(text) >= len(plain[-1]):
        forms = sorted(set().union(*(secret_forms(s) for s in plain)), key=len, reverse=True)
        # The marker itself must not spell a secret (a "secret" like "[REDACTE" would survive).
        marker = next((m for m in (REDACTED, "<redacted>", "#" * 6) if not any(f in m for f in forms)), "")
        for form in forms:
            out = out.replace(form, marker)
        out = _B64_TOKEN.sub(lambda m: marker if _decodes_to_secret(m.group(0), plain) else m.group(0), out)
    # Credentials after an auth scheme are removed whether or not we know them.
    return _AUTH_SCHEME.sub(_redact_scheme_value, out)


def _looks_like_credential(token: str) -> bool:
    if any(c.isdigit() or c in "+/=_|%.-~:" for c in token):
        return True
    return sum(c.isupper() for c in token) >= 2 and any(c.islower() for c in token)


def _redact_scheme_value(m: re.Match[str]) -> str:
    if not _looks_like_credential(m.group(3)):
        return m.group(0)  # an ordinary word ("Basic authentication"), not a credential
    return f"{m.group(1)}{m.group(2)}{REDACTED}"


def truncate(text: str, max_length: int = DEFAULT_MAX_LENGTH) -> str:
    """``text`` cut to ``max_length`` characters, marked with an ellipsis when cut."""
    if len(text) <= max_length:
        return text
    return text[: max(0, max_length - 1)].rstrip() + "…"


def sanitize(text: str, secrets: Iterable[str | None] = (), max_length: int = DEFAULT_MAX_LENGTH) -> str:
    """Redact, turn control characters (newlines, ANSI escapes) into spaces, then truncate."""
    secrets = list(secrets)
    cleaned = _CONTROL.sub(" ", redact(text, secrets)).strip()
    return truncate(cleaned, max_length)
