"""Events of the operator's background work (kube/events.py): the same core/v1 Event Kopf posts."""

from __future__ import annotations

from oneie_operator.kube.events import MAX_MESSAGE_LENGTH, shortened


def test_a_long_message_is_cut_in_the_middle_to_the_limit() -> None:
    message = "a" * 600 + "b" * 600
    cut = shortened(message)
    assert len(cut) == MAX_MESSAGE_LENGTH
    assert cut.startswith("a" * 500) and cut.endswith("b" * 500) and "..." in cut


def test_a_short_message_is_kept() -> None:
    assert shortened("BackendOffline") == "BackendOffline"
    assert shortened("x" * MAX_MESSAGE_LENGTH) == "x" * MAX_MESSAGE_LENGTH
