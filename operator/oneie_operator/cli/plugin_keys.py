"""``kubectl oneie keygen`` and ``kubectl oneie rotate-key``: encryption keys without copy-paste mistakes.

``rotate-key`` builds the next keyring from the current configuration (``ENCRYPTION_KEY`` or
``ENCRYPTION_KEYRING``, read from the operator's configuration Secret with ``--secret``, else from
this process's environment): every current key is kept (stored values stay readable) and the
new key becomes the primary. Restarted with it, the operator re-encrypts every stored credential
under the new primary; ``rotate-key --status`` shows how far that got.

In the Secret, ``ENCRYPTION_KEYRING`` is written and ``ENCRYPTION_KEY`` kept: the chart maps one
of the two by name (``encryption.existingSecretKey``), so the old key stays a fallback until the
deployment reads the keyring. A deployment that loads the whole Secret (``envFrom``) needs
``--drop-encryption-key``: the operator refuses both variables at once.

Key material: the new keyring holds every key, the old ones included. It is only ever written
where it is meant to go: into the Secret (``--secret``), into a file created with mode 0600
(``--output-file FILE``), or to stdout when stdout is redirected or piped (or with
``--output-file -``) -- never to a terminal, never to stderr, never in a message. Everything
else this module prints shows key ids only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oneie_operator.cli.plugin_common import ExitCode, PluginError, emit, say
from oneie_operator.cli.plugin_kube import Cluster
from oneie_operator.errors import ConfigurationError
from oneie_operator.kube.tables import table
from oneie_operator.names import CONNECTIONS
from oneie_operator.vault import ENCRYPTION_KEY_VAR, ENCRYPTION_KEYRING_VAR, EncryptionKey, Keyring, generate_key


def cmd_keygen(args: argparse.Namespace) -> int:
    key = generate_key()
    key_id = EncryptionKey.from_hex(key).id
    if args.output != "table":
        emit({"key": key, "id": key_id}, args.output)
    else:
        say(table(["KEY-ID", "KEY"], [[key_id, key]]))
    return ExitCode.OK


# -- building the keyring -------------------------------------------------------------------------


def current_keys(config: Mapping[str, str]) -> dict[str, str]:
    """``{key id: hex}`` of every configured key, the primary first (each validated as the operator does).

    A Secret may hold both ``ENCRYPTION_KEY`` and ``ENCRYPTION_KEYRING`` (the chart maps one of them
    by name, so the other stays as a fallback): then the keys of both are kept, the keyring's
    primary first -- the next keyring must decrypt whatever either of them encrypted.
    """
    single = (config.get(ENCRYPTION_KEY_VAR) or "").strip()
    ring = (config.get(ENCRYPTION_KEYRING_VAR) or "").strip()
    if not single and not ring:
        raise PluginError(f"no current key: neither {ENCRYPTION_KEY_VAR} nor {ENCRYPTION_KEYRING_VAR} is set")
    keys: dict[str, str] = {}
    try:
        if ring:
            keyring = Keyring.from_env(None, ring)
            listed = {str(k): str(v).strip().lower() for k, v in json.loads(ring)["keys"].items()}
            keys = {keyring.primary_id: listed[keyring.primary_id], **listed}
        if single:
            key_id = Keyring.from_env(single, None).primary_id
    except ConfigurationError as exc:
        raise PluginError(f"the current configuration is unusable: {exc}") from None
    if single and single.lower() not in keys.values():
        if key_id in keys:
            raise PluginError(f"{ENCRYPTION_KEY_VAR} and {ENCRYPTION_KEYRING_VAR} hold different keys under the id "
                              f"{key_id}: fix the configuration first")
        keys[key_id] = single.lower()
    return keys


def rotated_keyring(current: Mapping[str, str], new_key: str) -> dict[str, Any]:
    """The next keyring: every current key, plus ``new_key`` as the primary."""
    try:
        new = EncryptionKey.from_hex(new_key)
    except ConfigurationError as exc:
        raise PluginError(f"the new key is invalid: {exc}") from None
    hex_key = new_key.strip().lower()
    if new.id in current or hex_key in current.values():
        raise PluginError(f"the new key (id {new.id}) is already in the keyring: generate a fresh one")
    keys = {**current, new.id: hex_key}
    document = {"primary": new.id, "keys": keys}
    Keyring.from_env(None, json.dumps(document))  # the operator must accept it
    return document


def _new_key(args: argparse.Namespace) -> str:
    if args.generate:
        return generate_key()
    try:
        return Path(args.new_key_file).read_text().strip()
    except OSError as exc:
        raise PluginError(f"cannot read --new-key-file: {exc.strerror}") from None


def write_private(path: str, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (mode 0600, also when it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _summary(document: Mapping[str, Any], old: Mapping[str, str]) -> str:
    kept = ", ".join(old)
    return f"new primary key {document['primary']}; kept for decryption: {kept}"


def cmd_rotate_key(args: argparse.Namespace, cluster: Cluster | None) -> int:
    if args.status:
        assert cluster is not None
        return rotation_status(args, cluster)
    if bool(args.generate) == bool(args.new_key_file):
        raise PluginError("rotate-key needs exactly one of --generate or --new-key-file FILE (or --status)")
    to_stdout = args.output_file == "-" or (args.output_file is None and not args.secret)
    if to_stdout and args.output_file is None and sys.stdout.isatty():
        raise PluginError(
            "the new keyring holds every key (the old ones too) and is not printed to a terminal: "
            "use --secret NAME (write it into the operator's configuration Secret), --output-file FILE "
            "(mode 0600), or redirect stdout / --output-file - to pipe it"
        )
    namespace = ""
    if args.secret:
        assert cluster is not None
        namespace = args.secret_namespace or cluster.namespace
        config = cluster.read_secret(namespace, args.secret)
    else:
        config = {k: v for k, v in os.environ.items() if k in (ENCRYPTION_KEY_VAR, ENCRYPTION_KEYRING_VAR)}
    old = current_keys(config)
    document = rotated_keyring(old, _new_key(args))
    text = json.dumps(document)
    # Messages go to stdout unless stdout carries the keyring or a JSON/YAML document.
    info = sys.stderr if to_stdout or args.output != "table" else sys.stdout
    where = f"Secret {namespace}/{args.secret}"
    changes: dict[str, str | None] = {ENCRYPTION_KEYRING_VAR: text}
    if args.drop_encryption_key and ENCRYPTION_KEY_VAR in config:
        changes[ENCRYPTION_KEY_VAR] = None
    if args.dry_run:
        say(f"would write a keyring: {_summary(document, old)}" + (
            f" into {where} ({ENCRYPTION_KEYRING_VAR}"
            + (f"; {ENCRYPTION_KEY_VAR} removed)" if ENCRYPTION_KEY_VAR in changes else ")")
            if args.secret else ""))
        return ExitCode.OK
    if args.output_file and args.output_file != "-":
        write_private(args.output_file, text + "\n")
        say(f"wrote the new keyring to {args.output_file} (mode 0600): {_summary(document, old)}", info)
    if args.secret:
        assert cluster is not None
        cluster.patch_secret(namespace, args.secret, changes)
        kept = ENCRYPTION_KEY_VAR in config and ENCRYPTION_KEY_VAR not in changes
        say(f"{where}: {ENCRYPTION_KEYRING_VAR} written ({_summary(document, old)})"
            + (f"; {ENCRYPTION_KEY_VAR} removed" if ENCRYPTION_KEY_VAR in changes else "")
            + (f"; {ENCRYPTION_KEY_VAR} kept as a fallback" if kept else ""), info)
        say(f"next: make the operator read {ENCRYPTION_KEYRING_VAR} (chart: encryption.existingSecret={args.secret}, "
            f"encryption.existingSecretKey={ENCRYPTION_KEYRING_VAR})"
            + (f"; if it loads the whole Secret (envFrom), rerun with --drop-encryption-key: the operator refuses "
               f"both {ENCRYPTION_KEY_VAR} and {ENCRYPTION_KEYRING_VAR}" if kept else "")
            + f"; restart it; then follow: kubectl oneie rotate-key --status -A --secret {args.secret} "
            f"--secret-namespace {namespace}", info)
        if args.output != "table" and not to_stdout:
            emit({"kind": "KeyRotation", "secret": f"{namespace}/{args.secret}", "primary": document["primary"],
                  "keyIds": list(document["keys"]), "removed": [k for k, v in changes.items() if v is None]},
                 args.output)
    if to_stdout:
        sys.stdout.write(text + "\n")  # the keyring itself, redirected to where it belongs
        sys.stdout.flush()
    return ExitCode.OK


# -- progress -------------------------------------------------------------------------------------


def _primary(args: argparse.Namespace, cluster: Cluster) -> str:
    if args.primary:
        return str(args.primary)
    if args.secret:
        config = cluster.read_secret(args.secret_namespace or cluster.namespace, args.secret)
    else:
        config = {k: v for k, v in os.environ.items() if k in (ENCRYPTION_KEY_VAR, ENCRYPTION_KEYRING_VAR)}
        if not any(v.strip() for v in config.values()):
            raise PluginError("which key is the primary? give --primary ID or --secret NAME "
                              f"(or set {ENCRYPTION_KEY_VAR}/{ENCRYPTION_KEYRING_VAR})")
    return next(iter(current_keys(config)))


def rotation_status(args: argparse.Namespace, cluster: Cluster) -> int:
    """Connections by the key that encrypts their stored credentials, against the primary."""
    primary = _primary(args, cluster)
    rows: list[dict[str, Any]] = []
    for obj in cluster.list(CONNECTIONS, args.all_namespaces):
        meta, creds = obj.get("metadata") or {}, (obj.get("status") or {}).get("credentials") or {}
        ids = sorted(creds.get("keyIds") or ([creds["keyId"]] if creds.get("keyId") else []))
        state = "NoCredentials" if not ids else "Done" if ids == [primary] else "Pending"
        rows.append({"namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
                     "keyId": creds.get("keyId") or "", "keyIds": ids, "state": state})
    pending = sum(r["state"] == "Pending" for r in rows)
    done = sum(r["state"] == "Done" for r in rows)
    code = ExitCode.OK if pending == 0 else ExitCode.NOT_OK
    if args.output != "table":
        emit({"kind": "KeyRotationStatus", "primary": primary, "done": done, "pending": pending,
              "complete": pending == 0, "connections": rows}, args.output)
        return code
    if rows:
        say(table(["NAMESPACE", "NAME", "KEY-ID", "KEY-IDS", "STATE"],
                  [[r["namespace"], r["name"], r["keyId"], r["keyIds"], r["state"]] for r in rows]))
    without = len(rows) - done - pending
    say(f"primary {primary}: {done}/{done + pending} connections re-encrypted, {pending} pending"
        + (f", {without} without stored credentials" if without else "")
        + ("; rotation complete" if pending == 0 else ""))
    return code
