"""``flaxdev create|destroy|set|list|reload|version``: managing the device's models.

Each is a thin layer over the ioctls and sysfs, with their errors:

- ``create SOURCE`` creates the device model of a shipped model or a
  repository entry (``DIR/NAME``, see :mod:`pyflaxdev.repository`), with its
  labels (and vocabulary), ``--name``, the queueing knobs and the node's
  ``--owner``, ``--group`` and ``--mode``; a worker (``flaxdev serve``) serves
  it later.
- ``destroy NAME...`` destroys models (``FLAX_IOC_MODEL_DESTROY``): clients
  waiting on them fail with ``ENODEV``.
- ``set NAME KEY=VALUE...`` writes live settings in sysfs (``topk``,
  ``threshold``, ``timeout_ms``, ``max_batch``, ``max_queue_delay_us``,
  ``max_queue``, ``state``), each checked as a whole by the module.
- ``list`` prints one line per model: id, name, node owner, group and mode,
  shapes, post chain, workers and state (``--json`` for scripts).
- ``reload NAME`` asks the ``flaxdev serve`` process of a repository model
  (found by its run state, :mod:`pyflaxdev.runstate`) to switch to the
  entry's latest version without downtime (:mod:`pyflaxdev.rollout`) and
  waits for the outcome: exit 0 when that version serves, 1 with the reason
  when it was refused or failed (the old one still serves).
- ``version NAME`` prints the version that process serves, since when, and
  the last reload's outcome.
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import pwd
import signal
import stat
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pyflaxdev import models, repository, runstate, sysfs
from pyflaxdev.commands._common import doc, progress, zoo_spec
from pyflaxdev.commands.serve import group_id, node_args, node_mode, user_id
from pyflaxdev.device import Device, model_path
from pyflaxdev.errors import FlaxError, InvalidArgument

# Settings ``set`` writes, with the type of their value.
_SETTABLE = {
    "topk": int,
    "threshold": float,
    "timeout_ms": int,
    "max_batch": int,
    "max_queue_delay_us": int,
    "max_queue": int,
}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``create``, ``destroy``, ``set`` and ``list``."""
    text = doc(__doc__)
    p = sub.add_parser("create", help="create a device model", description=text)
    p.add_argument("source", metavar="SOURCE", help="shipped model or repository entry DIR/NAME")
    p.add_argument("--name", help="device model name (default: the model's)")
    p.add_argument("--nslots", type=int, default=64, help="job slots (default 64)")
    p.add_argument("--timeout-ms", type=int, default=0, help="request timeout (default: model's)")
    p.add_argument("--max-batch", type=int, default=0, help="most jobs per FETCH (0: nslots)")
    p.add_argument("--max-queue-delay-us", type=int, default=0, help="batching delay (0: none)")
    p.add_argument("--max-queue", type=int, default=0, help="requests under way (0: nslots)")
    p.add_argument("--owner", type=user_id, metavar="USER", help="owner (default: you)")
    p.add_argument("--group", type=group_id, metavar="GROUP", help="node group (default: yours)")
    p.add_argument("--mode", type=node_mode, default=0, metavar="MODE", help="octal node mode")
    p.set_defaults(run=run_create)

    p = sub.add_parser("destroy", help="destroy device models", description=text)
    p.add_argument("names", metavar="NAME", nargs="+", help="device model name")
    p.set_defaults(run=run_destroy)

    p = sub.add_parser("set", help="change live settings (sysfs)", description=text)
    p.add_argument("name", metavar="NAME", help="device model name")
    p.add_argument(
        "settings",
        metavar="KEY=VALUE",
        nargs="+",
        help=f"one of {', '.join(_SETTABLE)}, or state=drain|run",
    )
    p.set_defaults(run=run_set)

    p = sub.add_parser(
        "reload", help="switch a served repository model to its latest version", description=text
    )
    p.add_argument("name", metavar="NAME", help="device model name")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    p.add_argument("--no-wait", action="store_true", help="ask, do not wait for the outcome")
    p.set_defaults(run=run_reload)

    p = sub.add_parser("version", help="the version a model's worker serves", description=text)
    p.add_argument("name", metavar="NAME", help="device model name")
    p.add_argument("--json", action="store_true", help="the run state as JSON")
    p.set_defaults(run=run_version)

    p = sub.add_parser("list", help="the device models, one per line", description=text)
    p.add_argument("--json", action="store_true", help="a JSON list of objects")
    p.set_defaults(run=run_list)


def run_create(args: argparse.Namespace) -> int:
    """Create the device model of a shipped model or repository entry."""
    spec = zoo_spec(args.source)
    # The shipped zoo's modules are checked by the package's tests; checking one
    # imports JAX, which a client-only install (no "serve" extra) does not have.
    if "repository" in spec.metadata and Path(spec.metadata["repository"]).parent != models.ZOO:
        repository.check_module(spec)
    with Device(args.device) as dev:
        model = spec.create(
            dev,
            name=args.name,
            nslots=args.nslots,
            timeout_ms=args.timeout_ms,
            max_batch=args.max_batch,
            max_queue_delay_us=args.max_queue_delay_us,
            max_queue=args.max_queue,
            **node_args(args, spec),
        )
    i = model.info
    progress(
        f"created model {i.name!r} (id {i.id}): {model_path(i.name)} uid {i.owner_uid}"
        f" gid {i.owner_gid} mode {i.node_mode:04o}"
    )
    return 0


def run_destroy(args: argparse.Namespace) -> int:
    """Destroy each named model; go on past a failure, exit 1 if any failed."""
    status = 0
    with Device(args.device) as dev:
        for name in args.names:
            try:
                dev.destroy_model(name)
            except FlaxError as exc:
                progress(str(exc))
                status = 1
            else:
                progress(f"destroyed model {name!r}")
    return status


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise InvalidArgument(f"{text!r} is not KEY=VALUE")
    if key == "state":
        if value not in ("drain", "run"):
            raise InvalidArgument(f"state takes drain or run, not {value!r}")
        return key, value
    kind = _SETTABLE.get(key)
    if kind is None:
        raise InvalidArgument(f"{key!r} is not a setting; settable: {', '.join(_SETTABLE)}, state")
    try:
        return key, kind(value)
    except ValueError:
        raise InvalidArgument(f"{key} takes {'an integer' if kind is int else 'a number'},"
                              f" not {value!r}") from None  # fmt: skip


def run_set(args: argparse.Namespace) -> int:
    """Write each KEY=VALUE (all parsed first: a typo changes nothing)."""
    changes = [_setting(s) for s in args.settings]
    for key, value in changes:
        if key == "state":
            sysfs.set_state(args.name, value)
        else:
            sysfs.set_setting(args.name, key, value)
        progress(f"model {args.name!r}: {key} = {value}")
    return 0


def _name_of(ident: int, lookup: Any) -> str:
    try:
        return str(lookup(ident)[0])
    except KeyError:
        return str(ident)


def run_list(args: argparse.Namespace) -> int:
    """One line (or JSON object) per model."""
    rows: list[dict[str, Any]] = []
    with Device(args.device, writable=False) as dev:
        for name in sorted(sysfs.models()):
            try:
                info = dev.describe(name)
            except FlaxError:  # destroyed meanwhile
                continue
            node = Path(model_path(name))
            try:  # the node's mode now (chmod may have changed it since creation)
                mode = stat.S_IMODE(node.stat().st_mode)
            except OSError:
                mode = info.node_mode
            try:
                state = sysfs.read_state(name)
            except FlaxError:
                state = "-"
            rows.append(
                {
                    "id": info.id,
                    "name": name,
                    "node": str(node),
                    "owner": _name_of(info.owner_uid, pwd.getpwuid),
                    "group": _name_of(info.owner_gid, grp.getgrgid),
                    "mode": f"{mode:04o}",
                    "input": str(info.input),
                    "output": str(info.output),
                    "post": "+".join(info.post) or "raw",
                    "workers": info.nworkers,
                    "state": state,
                }
            )
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        progress("no models")
        return 0
    keys = ("id", "name", "owner", "group", "mode", "input", "output", "post", "workers", "state")
    table = [[k.upper() for k in keys], *[[str(r[k]) for k in keys] for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(keys))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def run_version(args: argparse.Namespace) -> int:
    """Print the version the serving process of a model serves."""
    state = runstate.read(args.name)
    if args.json:
        print(json.dumps(asdict(state)))
        return 0
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.since))
    print(
        f"{state.model}: version {state.version} since {since} (pid {state.pid};"
        f" versions {state.versions or '-'})"
    )
    if state.message:
        print(f"last reload: {state.message}")
    return 0


def run_reload(args: argparse.Namespace) -> int:
    """Ask the serving process to switch to the latest version; wait for its answer."""
    state = runstate.read(args.name)
    before = state.reloads
    os.kill(state.pid, signal.SIGHUP)
    progress(f"model {args.name!r}: asked pid {state.pid} to reload (version {state.version})")
    if args.no_wait:
        return 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        state = runstate.read(args.name)
        if state.reloads > before:
            progress(f"model {args.name!r}: version {state.version}: {state.message}")
            return 0 if "replaced" in state.message or "is the one serving" in state.message else 1
    progress(f"model {args.name!r}: no answer from pid {state.pid} in {args.timeout:g} s")
    return 1
