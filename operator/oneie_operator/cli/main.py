"""``oneie-operator``: run the operator, run the local demo, make keys.

Exit codes: 0 success; 1 the demo's expectations failed; 2 invalid configuration or usage (or
``demo`` without the ``demo`` extra installed).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from oneie_operator.cli.up import add_arguments as add_up_arguments
from oneie_operator.errors import ConfigurationError

if TYPE_CHECKING:
    from oneie_operator.handlers.services import Services


def _cmd_run(args: argparse.Namespace) -> int:
    import kopf

    from oneie_operator.config import load_config
    from oneie_operator.kube.client import load_api_client
    from oneie_operator.running import build_services, check_startup, serve_metrics

    try:
        config = load_config()
        check_startup(config)
    except ConfigurationError as exc:
        print(f"oneie-operator: {exc}", file=sys.stderr)
        return 2
    try:
        api_client = load_api_client(args.kubeconfig, args.context)
    except Exception as exc:  # kubeconfig missing or unreadable: a message, not a traceback
        print(f"oneie-operator: cannot load the Kubernetes configuration: {exc}", file=sys.stderr)
        return 2
    services = build_services(config, api_client)
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON if args.json_logs else kopf.LogFormat.PLAIN)
    try:
        serve_metrics(config, services.metrics)
    except ConfigurationError as exc:  # a port that is taken: one line, not a traceback
        print(f"oneie-operator: {exc}", file=sys.stderr)
        return 2
    tune_garbage_collector()
    try:
        _event_loop_runner(args.loop)(_run_then_close(services, args.namespace or ()))
    except KeyboardInterrupt:
        pass
    except ConfigurationError as exc:  # e.g. globs in WATCH_NAMESPACES without namespace listing
        print(f"oneie-operator: {exc}", file=sys.stderr)
        return 2
    return 0


#: The garbage collector's thresholds in ``oneie-operator run`` (CPython's default: 700, 10, 10).
#: Every watch event is a few hundred fresh dicts and lists; with the default the young generation
#: filled every few switches, its survivors reached the older generations, and a burst of 100
#: switches paid ~12 ms of middle and every other burst a ~45 ms full collection
#: (``benchmarks/switch.py`` with ``gc.callbacks`` timing). A larger young generation lets those
#: objects die of their reference counts first: over a run, collection time 0.9 → 0.5 s.
GC_THRESHOLDS = (10_000, 20, 10)


def tune_garbage_collector() -> None:
    """Freeze what start-up loaded and widen the young generation (see :data:`GC_THRESHOLDS`).

    Everything loaded so far (modules, the API client's models, the providers) lives as long as
    the process: ``gc.freeze`` keeps it out of the full passes, which otherwise scan it again and
    again (~100 ms pauses measured by benchmarks/switch.py, ~40 ms after this)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _event_loop_runner(kind: str) -> Callable[[Coroutine[Any, Any, None]], None]:
    """``uvloop.run`` (libuv's event loop: cheaper per event, per socket read, per task switch), or
    ``asyncio.run`` when asked for or when uvloop is not installed (it is a dependency on Linux
    and macOS)."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            logging.getLogger(__name__).warning("uvloop is not installed: running on asyncio's event loop")
        else:
            return uvloop.run
    return asyncio.run


async def _run_then_close(services: Services, namespaces: Sequence[str]) -> None:
    from oneie_operator.running import run_operator

    try:
        await run_operator(services, namespaces=namespaces)
    finally:
        await services.close()


#: Top-level modules of the ``demo`` extra that the demo imports (the emulator: kmock); its
#: validation libraries are optional at import time (the emulator warns when they are missing).
DEMO_EXTRA_MODULES = frozenset({"kmock", "jsonschema", "celpy", "kubernetes_validate"})


def _cmd_demo(args: argparse.Namespace) -> int:
    # Imported here only: the operator (`run`) never loads the demo or the emulator, and an
    # installation without the `demo` extra (the image) has neither kmock nor the validators.
    try:
        from oneie_operator.demo.scenario import run_demo
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in DEMO_EXTRA_MODULES:
            raise
        print(
            f"oneie-operator: the demo needs the optional extra 'demo' (module {exc.name!r} is missing): "
            "pip install 'oneie-operator[demo]'",
            file=sys.stderr,
        )
        return 2
    return run_demo(exit_when_done=args.exit, workdir=args.workdir, port=args.port, verbose=args.verbose)


def _cmd_up(args: argparse.Namespace) -> int:
    from pathlib import Path

    from oneie_operator.cli.up import decide

    decision = decide(args.kubeconfig, args.context, Path(args.workdir))
    print(decision.message, flush=True)
    if decision.action == "run":
        return _cmd_run(args)
    if decision.action == "demo":
        args.exit = False
        return _cmd_demo(args)
    return 0


def _cmd_keygen(args: argparse.Namespace) -> int:
    from oneie_operator.vault import generate_key

    print(generate_key())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oneie-operator", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    # What `run` and `up` share: where the cluster is and how the operator runs there.
    running = argparse.ArgumentParser(add_help=False)
    running.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)"
    )
    running.add_argument("--context", default=None, help="kubeconfig context")
    running.add_argument(
        "-n", "--namespace", action="append",
        help="serve this namespace or glob, !glob excludes (repeatable); default: all",
    )
    running.add_argument("--json-logs", action="store_true", help="log as JSON lines")
    running.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop: uvloop (default; ~20%% less CPU per switch in benchmarks/switch.py) or asyncio",
    )
    run = sub.add_parser("run", parents=[running], help="run the operator against the current kube context")
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", help="run everything locally: Kubernetes emulator, fake providers, the operator")
    demo.add_argument(
        "--exit", action="store_true", help="run the scenario unattended; exit 0 only if all went as expected"
    )
    demo.add_argument("--workdir", default=".oneie-demo", help="where the kubeconfig and logs go")
    demo.add_argument("--port", type=int, default=0, help="emulator port (0: any free port)")
    demo.set_defaults(func=_cmd_demo)

    up = sub.add_parser(
        "up",
        parents=[running],
        help="`run` when an API server answers in the current context, else `demo` (unless a demo already runs)",
    )
    add_up_arguments(up)
    up.set_defaults(func=_cmd_up)

    keygen = sub.add_parser("keygen", help="print a new ENCRYPTION_KEY (64 hex characters)")
    keygen.set_defaults(func=_cmd_keygen)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "run":  # `run` logs through kopf.configure (one handler, not two)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    # Every provider request at INFO drowns the operator's own log; failures are reported anyway.
    logging.getLogger("httpx").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
