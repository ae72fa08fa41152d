"""The operator's one retry policy: each error class declares what follows it (``errors.Retry``),
and every decision to retry, to poll, or to keep probing the last good credentials is read from
that declaration (``retry_of``, ``retry_of_reason``, ``keeps_last_good``), not from ``reason``
strings spread over the reconciles and handlers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import oneie_operator
from oneie_operator import errors
from oneie_operator.errors import Retry

AFTER, WATCH, BACKEND, CLUSTER = Retry.AFTER_CHANGE, Retry.ON_WATCH, Retry.BACKEND, Retry.CLUSTER

#: The whole table: every error class the operator has, and what follows it.
TABLE: dict[type[errors.OneieError], Retry] = {
    errors.OneieError: AFTER,
    errors.ConfigurationError: AFTER,
    errors.SpecError: AFTER,
    errors.UnknownProviderError: AFTER,
    errors.DestinationForbiddenError: AFTER,
    errors.CredentialsError: AFTER,
    errors.SecretNotFoundError: WATCH,
    errors.SecretKeyMissingError: AFTER,
    errors.SecretNotOptedInError: AFTER,
    errors.CredentialsRejectedError: AFTER,
    errors.ProviderError: BACKEND,
    errors.ProviderUnreachableError: BACKEND,
    errors.ProviderTimeoutError: BACKEND,
    errors.ProviderRateLimitedError: BACKEND,
    errors.ProviderServerError: BACKEND,
    errors.ProviderProtocolError: BACKEND,
    errors.SwitchTargetError: AFTER,
    errors.ConnectionNotFoundError: AFTER,
    errors.ConnectionNotReadyError: AFTER,
    errors.ConnectionDeletingError: AFTER,
    errors.NoBackendError: AFTER,
    errors.SwitchDeadlineError: BACKEND,
    errors.BindingIndeterminateError: CLUSTER,
    errors.APIServerError: AFTER,
    errors.APIServerUnavailableError: CLUSTER,
    errors.APIWriteRefusedError: AFTER,
    errors.SecretNameTakenError: AFTER,
    errors.DependencyTimeoutError: CLUSTER,
    errors.UnexpectedError: AFTER,
    errors.VaultError: AFTER,
    errors.KeyNotFoundError: AFTER,
    errors.DecryptionError: AFTER,
    errors.RegistryError: AFTER,
}


def _all_classes(cls: type[errors.OneieError] = errors.OneieError) -> set[type[errors.OneieError]]:
    return {cls} | {c for sub in cls.__subclasses__() for c in _all_classes(sub)}


def test_every_error_class_is_in_the_table() -> None:
    assert _all_classes() == set(TABLE)


@pytest.mark.parametrize("cls", list(TABLE), ids=lambda c: c.__name__)
def test_each_class_declares_its_policy(cls: type[errors.OneieError]) -> None:
    assert errors.retry_of(cls) is TABLE[cls]
    assert errors.retry_of_reason(cls.reason) is TABLE[cls]
    assert cls.transient is (TABLE[cls] is not AFTER)  # derived from the policy


def test_transient_is_never_declared_beside_the_policy() -> None:
    """Only ``retry`` is declared per class; a ``transient = ...`` of its own could contradict it."""
    tree = ast.parse(Path(errors.__file__).read_text(encoding="utf-8"))
    declared = [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name != "OneieError"
        for statement in node.body
        for target in (
            statement.targets if isinstance(statement, ast.Assign)
            else [statement.target] if isinstance(statement, ast.AnnAssign) else []
        )
        if isinstance(target, ast.Name) and target.id == "transient"
    ]
    assert declared == []


def test_instances_follow_their_class() -> None:
    assert errors.retry_of(errors.ProviderRateLimitedError("slow down", retry_after=3)) is BACKEND
    assert errors.retry_of(errors.APIServerUnavailableError("away", 503)) is CLUSTER
    assert errors.retry_of(errors.SecretNameTakenError("ns", "s", "BackendConnection", "c")) is AFTER
    assert errors.retry_of(errors.as_typed_error(TimeoutError())) is CLUSTER
    assert errors.retry_of(errors.as_typed_error(RuntimeError("x"))) is AFTER


def test_an_unknown_reason_waits_for_a_change() -> None:
    assert errors.retry_of_reason("") is AFTER
    assert errors.retry_of_reason("SomethingNew") is AFTER


def test_reasons_are_unique_per_class() -> None:
    """A reason stored in status names one class, so ``retry_of_reason`` is the class's policy."""
    reasons = [cls.reason for cls in TABLE]
    assert len(reasons) == len(set(reasons))


@pytest.mark.parametrize(
    ("error", "kept"),
    [
        (errors.ProviderUnreachableError("refused"), True),
        (errors.ProviderTimeoutError("slow"), True),
        (errors.ProviderRateLimitedError("429", retry_after=5), True),
        (errors.ProviderServerError("502"), True),
        (errors.ProviderProtocolError("not JSON"), True),
        (errors.CredentialsRejectedError("401"), True),
        (errors.SpecError([errors.FieldIssue("spec.convex.url", "expected https://")]), False),
        (errors.SecretNotFoundError("no such Secret"), False),
        (errors.SecretKeyMissingError("no key"), False),
        (errors.SecretNotOptedInError("no label"), False),
        (errors.DecryptionError("tampered"), False),
        (errors.APIServerUnavailableError("away", 503), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, errors.OneieError) else str(v),
)
def test_which_failures_keep_the_last_good_credentials_probed(error: errors.OneieError, kept: bool) -> None:
    assert errors.keeps_last_good(error) is kept


def test_no_retry_decision_compares_reason_strings() -> None:
    """In the reconciles and handlers, a ``reason`` is compared only with a class's declared reason
    (``SomeError.reason``) or with another stored reason, never with a string literal."""
    package = Path(oneie_operator.__file__).parent
    found = []
    for folder in ("reconcile", "handlers", "health"):
        for path in sorted((package / folder).glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Compare):
                    continue
                sides = [node.left, *node.comparators]
                about_reason = any(
                    (isinstance(s, ast.Attribute) and s.attr == "reason")
                    or (isinstance(s, ast.Call) and isinstance(s.func, ast.Attribute) and s.func.attr == "get"
                        and s.args and isinstance(s.args[0], ast.Constant) and s.args[0].value == "reason")
                    for s in sides
                )
                literal = any(
                    (isinstance(s, ast.Constant) and isinstance(s.value, str))
                    or (isinstance(s, ast.Tuple | ast.Set | ast.List)
                        and any(isinstance(e, ast.Constant) for e in s.elts))
                    for s in sides
                )
                if about_reason and literal:
                    found.append(f"{path.relative_to(package)}:{node.lineno}")
    advice = "decide on the error's class (errors.retry_of / keeps_last_good), not its reason text: "
    assert not found, advice + ", ".join(found)
