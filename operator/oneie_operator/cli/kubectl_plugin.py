"""``kubectl oneie``: tenants' backends from the command line (a kubectl plug-in).

Installed as the console script ``kubectl-oneie``; with it on PATH, ``kubectl oneie ...`` runs it.

Commands:
  status [NAME] [-A]             organizations and connections as tables; with a NAME (or org/NAME,
                                 bconn/NAME) the detail view: conditions, health, the last switch's
                                 timed steps and the recent history
  switch ORG --to CONN [--wait]  switch the organization's backend (spec.backend.connectionRef.name);
                                 --wait prints each step live, then the timed steps
  rollback ORG [--wait]          switch back to status.previousConnection (annotation one.ie/rollback)
  retry ORG [--wait]             retry a failed switch (annotation one.ie/retry)
  probe CONN [--wait]            request an immediate health probe (annotation one.ie/probe)
  dashboard [--port 3100]        a local web console (127.0.0.1, a per-run token in the printed URL)
                                 acting with your kubeconfig identity: fleet, organizations,
                                 connections, switch/rollback/retry/probe with live steps
  keygen                         a new 64-hex encryption key and its key id (stdout only)
  rotate-key                     the next keyring (--generate | --new-key-file F): every current key
                                 kept, the new one primary; into the operator's configuration Secret
                                 (--secret: ENCRYPTION_KEYRING written, ENCRYPTION_KEY kept unless
                                 --drop-encryption-key) or a 0600 file (--output-file);
                                 --status shows the re-encryption progress
  migrate-labels [-A]            label the Secrets existing BackendConnections use one.ie/credentials=true
                                 (the opt-in; only Opaque ones in the connection's namespace); --dry-run
  uninstall-cleanup [-A]         remove the operator's finalizer one.ie/finalizer from Organizations and
                                 BackendConnections after uninstalling it (nothing stays stuck); --dry-run

Global flags (as kubectl's): --kubeconfig, --context, -n/--namespace (default: the context's
namespace, else "default"), -A/--all-namespaces (status, rotate-key --status), -o table|json|yaml.
Mutating commands take --dry-run (the API server checks the change, nothing is stored).

GitOps: before switch and rollback, an Organization managed by Argo CD or Flux (tracking
annotations/labels, or their controllers in managedFields) gets a warning on stderr: the next
sync reverts a change made here; revert the commit in Git instead. The command still proceeds.

Key material: ``keygen`` prints a new key on stdout only. The keyring from ``rotate-key`` holds
every key, the old ones too: it goes only into the Secret, a file created with mode 0600, or a
redirected stdout -- never to a terminal, stderr or any message. Everything else shows key ids.

Exit codes (scripts rely on them):
  0  ok: every object shown is Ready; the switch Succeeded; the probe finished; rotation complete
  1  not ok: something is not Ready; the switch RolledBack or Failed (reason on stderr);
     the probed connection is offline; re-encryption still pending
  2  usage or API error: bad flags, object not found, no previous connection, nothing to retry,
     kubeconfig or API server errors
  3  timeout: --wait gave up (--timeout) before the outcome was known
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from oneie_operator.cli import plugin_keys, plugin_probe, plugin_status, plugin_switch, plugin_upgrade
from oneie_operator.cli.plugin_common import OUTPUT_FORMATS, ExitCode, PluginError
from oneie_operator.cli.plugin_kube import Cluster

PROG = "kubectl oneie"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise PluginError(message, ExitCode.USAGE)


def _global_flags(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """kubectl's flags, accepted before and after the command (``suppress``: no default on commands)."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("global flags")
    group.add_argument("--kubeconfig", default=default(None), help="kubeconfig file (default: $KUBECONFIG, ~/.kube)")
    group.add_argument("--context", default=default(None), help="kubeconfig context (default: the current one)")
    group.add_argument("-n", "--namespace", default=default(None),
                       help="namespace (default: the context's namespace, else 'default')")
    group.add_argument("-A", "--all-namespaces", action="store_true", default=default(False),
                       help="every namespace (status, rotate-key --status, migrate-labels, uninstall-cleanup)")
    group.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default=default("table"), help="output format")


def build_parser() -> argparse.ArgumentParser:
    doc = (__doc__ or "").replace("``", "")
    cut = doc.find("Exit codes")
    exit_codes = doc[cut:] if cut >= 0 else ""
    parser = _Parser(prog=PROG, description=doc[:cut] if cut >= 0 else doc, epilog=exit_codes,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _global_flags(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    def command(name: str, help_: str, func: Callable[..., int]) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_, description=help_, epilog=exit_codes,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        _global_flags(cmd, suppress=True)
        cmd.set_defaults(func=func)
        return cmd

    def waiting(cmd: argparse.ArgumentParser, what: str) -> None:
        cmd.add_argument("--wait", action="store_true", help=f"wait for {what} (exit 0 ok, 1 not ok, 3 timeout)")
        cmd.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                         help="give up waiting after this long (default: the switch deadline + 30 s; probes 60 s)")
        cmd.add_argument("--dry-run", action="store_true",
                         help="show the change; the API server checks it, stores nothing")

    status = command("status", "organizations and connections; one of them in detail", plugin_status.cmd_status)
    status.add_argument("name", nargs="?", metavar="NAME",
                        help="an Organization or BackendConnection (org/NAME, bconn/NAME)")

    switch = command("switch", "switch an organization to another BackendConnection", plugin_switch.cmd_switch)
    switch.add_argument("name", metavar="ORG")
    switch.add_argument("--to", required=True, metavar="CONN", help="the BackendConnection to switch to")
    waiting(switch, "the switch to finish, printing each step")

    rollback = command("rollback", "switch back to status.previousConnection", plugin_switch.cmd_rollback)
    rollback.add_argument("name", metavar="ORG")
    waiting(rollback, "the rollback to finish, printing each step")

    retry = command("retry", "retry a failed switch (after fixing its cause)", plugin_switch.cmd_retry)
    retry.add_argument("name", metavar="ORG")
    waiting(retry, "the new attempt to finish, printing each step")

    probe = command("probe", "request an immediate health probe of a BackendConnection", plugin_probe.cmd_probe)
    probe.add_argument("name", metavar="CONN")
    waiting(probe, "status.health.lastProbeTime to change")

    dashboard = command("dashboard", "a local web console acting with your kubeconfig identity",
                        _dashboard)
    dashboard.add_argument("--port", type=int, default=3100, help="port to listen on (default 3100; 0: any free one)")
    dashboard.add_argument("--address", default="127.0.0.1",
                           help="address to listen on (default 127.0.0.1; another needs --allow-remote)")
    dashboard.add_argument("--allow-remote", action="store_true",
                           help="allow a non-loopback --address (anyone with the URL acts as you)")
    dashboard.add_argument("--operator-namespace", default="oneie-system",
                           help="the operator's namespace, where its provider catalog is (default oneie-system)")

    command("keygen", "print a new encryption key (64 hex) and its key id", plugin_keys.cmd_keygen)

    rotate = command("rotate-key", "build the next keyring (new primary key), or show re-encryption progress",
                     plugin_keys.cmd_rotate_key)
    source = rotate.add_mutually_exclusive_group()
    source.add_argument("--generate", action="store_true", help="generate the new key")
    source.add_argument("--new-key-file", metavar="FILE", help="read the new key (64 hex) from FILE")
    source.add_argument("--status", action="store_true", help="connections by key id against the primary")
    rotate.add_argument("--secret", metavar="NAME",
                        help="the operator's configuration Secret: read the current keys from it and write "
                             "ENCRYPTION_KEYRING into it (ENCRYPTION_KEY stays, as a fallback)")
    rotate.add_argument("--drop-encryption-key", action="store_true",
                        help="with --secret: also remove ENCRYPTION_KEY (when the operator loads the whole Secret "
                             "with envFrom: it refuses ENCRYPTION_KEY and ENCRYPTION_KEYRING together)")
    rotate.add_argument("--secret-namespace", metavar="NS", help="namespace of --secret (default: -n)")
    rotate.add_argument("--output-file", metavar="FILE",
                        help="also write the keyring to FILE (mode 0600); '-' for stdout")
    rotate.add_argument("--primary", metavar="ID", help="with --status: the primary key id (default: from --secret)")
    rotate.add_argument("--dry-run", action="store_true", help="show the key ids the keyring would have")

    migrate = command("migrate-labels", "opt in the credential Secrets that existing BackendConnections use",
                      plugin_upgrade.cmd_migrate_labels)
    migrate.add_argument("--dry-run", action="store_true", help="show what would be labelled; store nothing")
    cleanup = command("uninstall-cleanup", "remove the operator's finalizer from Organizations and "
                      "BackendConnections (after uninstalling the operator)", plugin_upgrade.cmd_uninstall_cleanup)
    cleanup.add_argument("--dry-run", action="store_true", help="show what would be removed; store nothing")
    return parser


def _dashboard(args: argparse.Namespace, cluster: Cluster) -> int:
    from oneie_operator.cli.dashboard.server import cmd_dashboard  # aiohttp only when needed

    return cmd_dashboard(args, cluster)


def _needs_cluster(args: argparse.Namespace) -> bool:
    if args.command == "keygen":
        return False
    if args.command == "rotate-key":
        return bool(args.secret or args.status)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    cluster: Cluster | None = None
    try:
        args = build_parser().parse_args(argv)
        if args.all_namespaces and args.namespace:
            raise PluginError("-A and -n cannot be combined")
        if _needs_cluster(args):
            cluster = Cluster(args.kubeconfig, args.context, args.namespace)
        if args.command in ("keygen",):
            return int(args.func(args))
        return int(args.func(args, cluster))
    except PluginError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `kubectl oneie status | head`: the reader is gone, as for any Unix tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    except Exception as exc:  # API server unreachable and the like: a message, not a traceback
        print(f"{PROG}: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
        return int(ExitCode.USAGE)
    finally:
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    sys.exit(main())
