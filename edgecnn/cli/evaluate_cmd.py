"""``edgecnn evaluate``."""

from __future__ import annotations

import json

import click

from edgecnn.cli.options import (
    data_option,
    json_option,
    remote_python_option,
    ssh_config_option,
    ssh_timeout_option,
)
from edgecnn.vocab import Runtime


@click.command()
@click.argument("artifact", type=click.Path(exists=True))
@data_option
@click.option(
    "--runtime",
    type=click.Choice(Runtime.values()),
    default=None,
    help="Run in this runtime instead of the artifact's own (e.g. a Jetson ONNX in onnxruntime).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for the runtime (default: the runtime's own choice).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Only the first N test images (a quick check; the full set is the figure to report).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Images per run call (default 128, a multiple of a fixed batch).",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="[USER@]HOST",
    help="Measure on this device over SSH (repeat for several); statistics are computed here.",
)
@remote_python_option
@ssh_config_option
@ssh_timeout_option
@json_option
def evaluate(
    artifact,
    data,
    runtime,
    threads,
    limit,
    batch_size,
    hosts,
    remote_python,
    ssh_config,
    ssh_timeout,
    as_json,
):
    """Accuracy of an exported ARTIFACT (directory or file) in its runtime.

    Runs the whole test set through the artifact's own preprocessing and reports top-1,
    top-5 and a bootstrap 95% interval of top-1. When the export saved reference
    predictions, also agreement with the fake-quant PyTorch graph and an exact McNemar
    test against the FP32 model.

    With --host the whole split runs on each device (over SSH, as bench --host; the
    device needs numpy, its runtime and a torch-free edgecnn), the artifact runs here
    too, and each device's result says where it was measured and which images flipped
    against this machine's run. The exit status is 2 if any host failed.

    \b
    Example:
      edgecnn evaluate runs/export/resnet18-cpu-int8
      edgecnn evaluate runs/export/resnet18-jetson-int8 --runtime onnxruntime --json
      edgecnn evaluate runs/export/resnet18-rpi-int8 --host pi@pi5.local
    """
    from edgecnn.evaluate import evaluate_artifact, json_report

    log = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    if hosts:
        _evaluate_hosts(
            artifact,
            hosts,
            data=data,
            runtime=runtime,
            threads=threads,
            limit=limit,
            batch_size=batch_size,
            remote_python=remote_python,
            ssh_config=ssh_config,
            timeout=ssh_timeout,
            as_json=as_json,
            log=log,
        )
        return
    result = evaluate_artifact(
        artifact, data=data, runtime=runtime, threads=threads, limit=limit, batch_size=batch_size, log=log
    )
    if as_json:
        click.echo(json.dumps(json_report(result), indent=2))
        return
    _print_table(result)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _print_table(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{r['arch']} · {r['target']} · {r['precision']} · {r['runtime']}", show_header=False)
    t.add_column("metric", style="bold")
    t.add_column("value", justify="right")
    lo, hi = r["top1_ci"]
    t.add_row("images", f"{r['num_images']} ({r['dataset']} {r['split']})")
    t.add_row("top-1", f"{_pct(r['top1'])}  [{_pct(lo)}, {_pct(hi)}] {int(r['ci_level'] * 100)}% CI")
    t.add_row("top-5", _pct(r["top5"]))
    if r["agreement"] is not None:
        t.add_row("agreement with fake-quant graph", _pct(r["agreement"]))
        t.add_row("fake-quant graph top-1", _pct(r["reference_top1"]))
    if r["mcnemar"] is not None:
        m = r["mcnemar"]
        t.add_row("FP32 top-1", _pct(r["fp32_top1"]))
        t.add_row("change vs FP32", f"{100 * r['delta_top1']:+.2f} points")
        p = f"p = {m['p_value']:.3g}" if m["p_value"] > 0 else "p < 1e-300"  # below float range
        t.add_row("McNemar vs FP32", f"{p} (fixed {m['b01']}, broke {m['b10']})")
    t.add_row("time", f"{r['seconds']:.1f} s (batch {r['batch_size']})")
    console = Console()
    console.print(t)
    for note in r["notes"]:
        console.print(f"note: {note}", style="yellow")


def _evaluate_hosts(artifact, hosts, *, as_json: bool, **kwargs) -> None:
    """Every host's accuracy (or its one-line error on stderr); exit 2 after printing all if any failed."""
    import sys

    from edgecnn.device_eval import evaluate_hosts

    results = evaluate_hosts(artifact, hosts, **kwargs)
    if as_json:
        click.echo(json.dumps([r.result.to_json() if r.ok else r.to_dict() for r in results], indent=2))
    for r in results:
        if r.ok and not as_json:
            _print_device(r.result)
        elif not r.ok:
            click.echo(f"error: {r.error}", err=True)
    if not all(r.ok for r in results):
        sys.exit(2)


def _print_device(r) -> None:
    from edgecnn.device_eval import FLIPPED_SHOWN

    m = r.machine
    lo, hi = r.top1_ci
    click.echo(
        f"{r.host}: {r.arch} {r.precision} in {r.runtime} {r.runtime_version or ''} "
        f"on {m.get('hostname')} ({m.get('board') or m.get('cpu_model')}, {m.get('uname')})"
    )
    emu = m.get("emulated")
    where = (
        f"on an EMULATED device: QEMU, CPU model {emu.get('cpu', '?')}" if emu else "measured on the device"
    )
    click.echo(
        f"  top-1 {_pct(r.top1)} [{_pct(lo)}, {_pct(hi)}] {int(r.ci_level * 100)}% CI, top-5 "
        f"{_pct(r.top5)} on {r.num_images} {r.dataset} {r.split} images ({where})"
    )
    if r.agreement is not None:
        click.echo(f"  agreement with the fake-quant graph {_pct(r.agreement)}")
    if r.mcnemar is not None:
        click.echo(
            f"  FP32 {_pct(r.fp32_top1)}, change {100 * r.delta_top1:+.2f} points, "
            f"McNemar p = {r.mcnemar['p_value']:.3g}"
        )
    if r.host_run is not None:
        h = r.host_run
        shown = ", ".join(str(i) for i in h.flipped[:FLIPPED_SHOWN])
        more = (
            f" and {len(h.flipped) - FLIPPED_SHOWN} more (--json lists all)"
            if len(h.flipped) > FLIPPED_SHOWN
            else ""
        )
        click.echo(
            f"  agreement with this machine's run ({h.runtime}, top-1 {_pct(h.top1)}) {_pct(h.agreement)}; "
            f"{len(h.flipped)} images flipped" + (f": {shown}{more}" if h.flipped else "")
        )
    click.echo(f"  {r.seconds:.1f} s on the device, {r.wall_s:.1f} s with the transfer")
    for note in r.notes:
        click.echo(f"  note: {note}")
