"""An organization that nothing happened to writes nothing when it is reconciled again (issue 14
item 6: the operator restarts, Kopf resumes every organization), also right after its switch.

On the in-memory fakes of ``switch_fakes`` (the binding store, the connections, the provider),
driven by the real reconcile; the status patches it returns are applied as the API server would.
"""

from __future__ import annotations

from oneie_operator.reconcile.organizations import reconcile_organization

from .switch_fakes import make_world


async def test_a_steady_reconcile_after_a_switch_writes_nothing() -> None:
    world = await make_world(active=None, desired="old-db")
    switched = await reconcile_organization(world.org(), world.deps)
    assert switched.switch is not None and switched.switch.result == "Succeeded"
    world.apply(switched.status)
    world.faults.calls.clear()

    again = await reconcile_organization(world.org(), world.deps)  # a resume: nothing changed
    assert again.unchanged, f"status rewritten: {again.status}"
    assert again.status == {} and again.events == []
    assert not [c for c in world.faults.calls if "write" in c or "delete" in c], world.faults.calls
