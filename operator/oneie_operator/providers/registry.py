"""Which providers exist: built-ins and plug-ins, all found through the ``oneie.providers`` entry points.

A provider package declares, in its own ``pyproject.toml``::

    [project.entry-points."oneie.providers"]
    echo = "oneie_echo_provider:EchoProvider"

and :meth:`ProviderRegistry.load_entry_points` finds it — the built-ins register exactly the same way.

Broken plug-ins are loud, never silently dropped. Loading does not stop at the first broken
entry point (one bad plug-in must not hide the others' problems): every problem becomes a
:class:`~oneie_operator.errors.RegistryError` that is logged at ERROR and kept in
:attr:`ProviderRegistry.errors`. The operator must refuse to start while ``errors`` is not empty
(call :meth:`ProviderRegistry.raise_for_errors` at start-up): running without a provider that
tenants' connections name would break them. Problems detected:

* the entry point cannot be imported (``ImportError``, ``SyntaxError``, any exception);
* it is not a concrete :class:`~oneie_operator.providers.base.Provider` subclass, or its class
  attributes are malformed (``name``, ``settings_model``, ``secret_fields``, ``capabilities``);
* the entry point's name differs from the class's ``name``;
* two entry points (or a manual :meth:`~ProviderRegistry.register`) claim one name: the error
  names both origins, and the first registration stays (built-ins are loaded first).

:func:`validate_settings` turns a ``spec.<provider>`` block into the provider's settings model,
with field-level messages that name the field (``spec.convex.url``) and the expected format and
never echo the value.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from oneie_operator.errors import FieldIssue, RegistryError, SpecError, UnknownProviderError
from oneie_operator.providers.base import Provider, ProviderSettings

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "oneie.providers"
#: A provider name is a ``spec`` key, a label value and part of a label key.
PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
CAPABILITY_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")

AnyProvider = Provider[Any]


def _origin_of(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _check_provider_class(obj: object) -> type[AnyProvider]:
    """Return ``obj`` as a provider class, or raise :class:`RegistryError` saying what is wrong."""
    if not inspect.isclass(obj) or not issubclass(obj, Provider):
        raise RegistryError(f"{obj!r} is not a subclass of oneie_operator.providers.base.Provider")
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise RegistryError(f"{_origin_of(obj)} is abstract (does not implement {missing})")
    problems: list[str] = []
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not PROVIDER_NAME.match(name):
        problems.append("name must be lower-case letters, digits and dashes, like 'convex'")
    if not isinstance(getattr(obj, "display_name", None), str):
        problems.append("display_name must be a string")
    model = getattr(obj, "settings_model", None)
    if not (inspect.isclass(model) and issubclass(model, ProviderSettings)):
        problems.append("settings_model must be a ProviderSettings subclass")
    for attr in ("secret_fields", "optional_secret_fields"):
        value = getattr(obj, attr, None)
        if not isinstance(value, tuple) or not all(isinstance(f, str) and f for f in value):
            problems.append(f"{attr} must be a tuple of field names")
    caps = getattr(obj, "capabilities", None)
    if not isinstance(caps, frozenset) or not all(isinstance(c, str) and CAPABILITY_NAME.match(c) for c in caps):
        problems.append("capabilities must be a frozenset of names like 'realtime'")
    if problems:
        raise RegistryError(f"provider {_origin_of(obj)} is malformed: {'; '.join(problems)}")
    return obj


class ProviderRegistry:
    """Registered providers by name. One instance per process is usual (:func:`default_registry`)."""

    def __init__(self) -> None:
        self._providers: dict[str, AnyProvider] = {}
        self._origins: dict[str, str] = {}
        #: Problems found while loading plug-ins; the operator refuses to start while non-empty.
        self.errors: list[RegistryError] = []

    # ------------------------------------------------------------------ registration
    def register(self, provider_cls: type[AnyProvider], *, origin: str | None = None) -> AnyProvider:
        """Register a provider class; raise :class:`RegistryError` if broken or a duplicate.

        Registering the very same class again is a no-op (a distribution found twice on the path).
        """
        cls = _check_provider_class(provider_cls)
        origin = origin or _origin_of(cls)
        existing = self._providers.get(cls.name)
        if existing is not None:
            if type(existing) is cls:
                return existing
            raise RegistryError(
                f"provider name {cls.name!r} is registered twice: by {self._origins[cls.name]} "
                f"and by {origin}; uninstall one of them"
            )
        instance = cls()
        self._providers[cls.name] = instance
        self._origins[cls.name] = origin
        return instance

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[RegistryError]:
        """Load every entry point of ``group``; return (and keep in :attr:`errors`) the problems."""
        found: list[RegistryError] = []
        # Built-ins first (so on a name clash the built-in stays), then plug-ins by name.
        entry_points = sorted(
            importlib.metadata.entry_points(group=group),
            key=lambda e: (not e.value.startswith("oneie_operator."), e.name, e.value),
        )
        for ep in entry_points:
            dist = getattr(ep, "dist", None)
            where = f"entry point {ep.name!r} = {ep.value!r}"
            if dist is not None:
                where += f" (distribution {dist.metadata['Name']} {dist.version})"
            try:
                try:
                    obj = ep.load()
                except Exception as exc:
                    raise RegistryError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from exc
                try:
                    cls = _check_provider_class(obj)
                except RegistryError as exc:
                    raise RegistryError(f"{where}: {exc}") from None
                if cls.name != ep.name:
                    raise RegistryError(
                        f"{where}: the entry point is named {ep.name!r} but the class's name is "
                        f"{cls.name!r}; they must be equal"
                    )
                self.register(cls, origin=where)
            except RegistryError as exc:
                log.error("provider plug-in problem: %s", exc)
                found.append(exc)
        self.errors.extend(found)
        return found

    def raise_for_errors(self) -> None:
        """Raise one :class:`RegistryError` summarising :attr:`errors`, if any (start-up gate)."""
        if self.errors:
            summary = "; ".join(str(e) for e in self.errors)
            raise RegistryError(f"{len(self.errors)} provider plug-in problem(s): {summary}")

    # ------------------------------------------------------------------ lookup
    def get(self, name: str) -> AnyProvider:
        """The provider named ``name``; :class:`UnknownProviderError` names the known ones."""
        provider = self._providers.get(name)
        if provider is None:
            known = ", ".join(self.names()) or "(none registered)"
            shown = name if isinstance(name, str) and len(name) <= 63 else "(invalid name)"
            raise UnknownProviderError(
                [FieldIssue("spec.provider", f"unknown provider {shown!r}; expected one of: {known}")]
            )
        return provider

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._providers))

    def origin(self, name: str) -> str:
        """Where the provider ``name`` came from (module:Class, entry point, distribution)."""
        self.get(name)
        return self._origins[name]

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    def __iter__(self) -> Iterator[AnyProvider]:
        return iter(self._providers[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._providers)


@functools.cache
def default_registry() -> ProviderRegistry:
    """The process-wide registry with every installed entry point loaded (cached).

    Check ``default_registry().errors`` (or call ``raise_for_errors()``) before serving.
    """
    registry = ProviderRegistry()
    registry.load_entry_points()
    return registry


# ---------------------------------------------------------------------- settings validation
def _loc_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _field_description(model: type[BaseModel], loc: tuple[int | str, ...]) -> str | None:
    if not loc or not isinstance(loc[0], str):
        return None
    for name, info in model.model_fields.items():
        if loc[0] in (name, info.alias):
            return info.description
    return None


def _known_fields(model: type[BaseModel]) -> str:
    return ", ".join(info.alias or name for name, info in model.model_fields.items())


def _message(model: type[BaseModel], err: Mapping[str, Any]) -> str:
    kind = str(err.get("type", ""))
    loc = tuple(err.get("loc", ()))
    described = _field_description(model, loc)
    expected = f"expected {described}" if described else None
    if kind == "missing":
        return f"is required; {expected}" if expected else "is required"
    if kind == "extra_forbidden":
        return f"is not a known field; known fields: {_known_fields(model)}"
    if kind == "value_error":
        # Our validators write the whole sentence (and never include the value).
        return str(err.get("msg", "is invalid")).removeprefix("Value error, ")
    if kind in ("string_pattern_mismatch", "string_too_short", "string_too_long"):
        return f"has the wrong format; {expected}" if expected else "has the wrong format"
    text = str(err.get("msg", "is invalid"))  # pydantic's messages describe the type, not the value
    text = text[0].lower() + text[1:] if text else "is invalid"
    return f"{text}; {expected}" if expected else text


def validate_settings(provider: AnyProvider, raw_block: Any, field_prefix: str) -> ProviderSettings:
    """Validate ``spec.<provider>`` (``raw_block``) into the provider's settings model.

    Raises :class:`SpecError` with one :class:`FieldIssue` per problem, each naming the field
    (``field_prefix`` + path, like ``spec.convex.url``) and the expected format. The offending value
    is never repeated in a message.
    """
    model = provider.settings_model
    if raw_block is None:
        raw_block = {}
    if not isinstance(raw_block, Mapping):
        raise SpecError([FieldIssue(field_prefix, f"must be an object with fields: {_known_fields(model)}")])
    try:
        return model.model_validate(dict(raw_block))
    except ValidationError as exc:
        issues = [
            FieldIssue(_loc_path(field_prefix, tuple(err["loc"])), _message(model, err))
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise SpecError(issues) from None
