"""Cost of the vault per credential set: seal (encrypt every field) + unseal (decrypt every field).

    python benchmarks/vault.py [--seconds 4] [--seed 20250601]

The baseline, measured in the same run on the same bytes, is raw ``AESGCM.encrypt`` +
``AESGCM.decrypt`` per field with a fresh ``os.urandom(12)`` nonce (any correct use needs
one) and nothing else: no associated data, no UTF-8 encoding, no base64, no token
parsing, no dicts. ``ratio`` = vault / baseline is therefore the price of our framing.

The credential sets are fixed by the seed (3 fields of 40-200 characters each, like a
URL, a user name and an API key); only the nonces are random. Vault and baseline are
timed in interleaved rounds (garbage collector off); the medians of the rounds are
reported, and ``ratio`` is the median of the per-round ratios, so a noisy neighbour
affects both sides of each ratio alike.

The last line of output is ``key=value`` pairs; everything before it is detail.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

try:
    from oneie_operator import vault
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))
    from oneie_operator import vault

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NAMESPACE = "org-acme-corporation"
CONNECTION = "primary-backend"
DISTINCT_SETS = 512


def make_sets(seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    url_chars = string.ascii_lowercase + string.digits + "-"
    token_chars = string.ascii_letters + string.digits + "_-."

    def text(alphabet: str, low: int, high: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))

    sets = []
    for _ in range(DISTINCT_SETS):
        sets.append(
            {
                "url": "https://" + text(url_chars, 28, 60) + ".example.com",  # 48-80 chars
                "username": text(string.ascii_lowercase + ".@", 40, 64),
                "apiKey": "sk_" + text(token_chars, 60, 197),  # 63-200 chars
            }
        )
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="total measuring time (about)")
    parser.add_argument("--seed", type=int, default=20250601, help="seed for the credential data")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds per side")
    args = parser.parse_args()

    sets = make_sets(args.seed)
    raw_sets = [[value.encode("utf-8") for value in creds.values()] for creds in sets]
    key_hex = vault.generate_key()
    ring = vault.Keyring.from_env(key_hex, None)
    aead = AESGCM(bytes.fromhex(key_hex))

    # Correctness first: a benchmark of something broken measures nothing.
    for creds in sets:
        sealed = vault.seal(ring, creds, namespace=NAMESPACE, connection=CONNECTION)
        assert vault.unseal(ring, sealed, namespace=NAMESPACE, connection=CONNECTION) == creds
    for values in raw_sets:
        for value in values:
            nonce = os.urandom(12)
            assert aead.decrypt(nonce, aead.encrypt(nonce, value, None), None) == value

    def run_vault(count: int) -> None:
        seal, unseal = vault.seal, vault.unseal
        for i in range(count):
            creds = sets[i % DISTINCT_SETS]
            sealed = seal(ring, creds, namespace=NAMESPACE, connection=CONNECTION)
            unseal(ring, sealed, namespace=NAMESPACE, connection=CONNECTION)

    def run_baseline(count: int) -> None:
        encrypt, decrypt, urandom = aead.encrypt, aead.decrypt, os.urandom
        for i in range(count):
            for value in raw_sets[i % DISTINCT_SETS]:
                nonce = urandom(12)
                decrypt(nonce, encrypt(nonce, value, None), None)

    def timed(run: Callable[[int], None], count: int) -> float:
        start = time.perf_counter_ns()
        run(count)
        return (time.perf_counter_ns() - start) / 1000 / count  # µs per set

    # Calibrate: size a round so that all rounds of both sides take about --seconds.
    probe = 200
    probe_us = timed(run_vault, probe) + timed(run_baseline, probe)
    per_round_budget_us = args.seconds * 1e6 / args.rounds
    count = max(probe, int(per_round_budget_us / probe_us))

    vault_rounds: list[float] = []
    baseline_rounds: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        run_vault(probe)  # warm-up
        run_baseline(probe)
        for _ in range(args.rounds):
            vault_rounds.append(timed(run_vault, count))
            baseline_rounds.append(timed(run_baseline, count))
    finally:
        if gc_was_enabled:
            gc.enable()

    vault_us = statistics.median(vault_rounds)
    baseline_us = statistics.median(baseline_rounds)
    ratios = [v / b for v, b in zip(vault_rounds, baseline_rounds, strict=True)]
    fields = sum(len(s) for s in sets) / len(sets)
    plain_chars = sum(len(v) for s in sets for v in s.values()) / len(sets)
    sample = vault.seal(ring, sets[0], namespace=NAMESPACE, connection=CONNECTION)
    token_chars = sum(
        len(t) for s in sets for t in vault.seal(ring, s, namespace=NAMESPACE, connection=CONNECTION).values()
    ) / len(sets)

    print(f"python {sys.version.split()[0]}, cryptography {__import__('cryptography').__version__}")
    print(
        f"data: {DISTINCT_SETS} distinct sets (seed {args.seed}), {fields:.1f} fields/set, "
        f"{plain_chars:.0f} plaintext chars/set -> {token_chars:.0f} token chars/set"
    )
    print(f"sample token: {next(iter(sample.values()))[:40]}...")
    print(f"rounds: {args.rounds} x {count} sets per side, interleaved, gc off")
    print("vault    us/set per round: " + " ".join(f"{v:.2f}" for v in vault_rounds))
    print("baseline us/set per round: " + " ".join(f"{b:.2f}" for b in baseline_rounds))
    print(f"ratio per round: {' '.join(f'{r:.2f}' for r in ratios)}")
    print(
        f"vault_us_per_set={vault_us:.2f} baseline_us_per_set={baseline_us:.2f} "
        f"ratio={statistics.median(ratios):.2f} overhead_us_per_set={vault_us - baseline_us:.2f} "
        f"vault_us_per_field={vault_us / fields:.2f} fields_per_set={fields:.0f} "
        f"sets={count * args.rounds} rounds={args.rounds}"
    )


if __name__ == "__main__":
    main()
