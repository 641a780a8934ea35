"""``edgecnn diagnose``."""

from __future__ import annotations

import json
import sys

import click

from edgecnn.cli.options import (
    data_option,
    json_option,
    plot_option,
    remote_python_option,
    ssh_config_option,
    ssh_timeout_option,
)
from edgecnn.vocab import Runtime


@click.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(exists=True), metavar="ARTIFACT...")
@click.option(
    "--images",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    metavar="N",
    help="Test images to run (the first N of the test split).",
)
@click.option(
    "--runtime",
    type=click.Choice(Runtime.values()),
    default=None,
    help="Run in this runtime instead of each artifact's own (e.g. a Jetson ONNX in openvino).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(min=0, max=1),
    default=0.02,
    show_default=True,
    help="A layer departs when more than this share of its values is off by one step or more.",
)
@click.option(
    "--graph",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The quantized graph (quantized.pt2) to compare with (default: the one the artifact names).",
)
@click.option(
    "--layers",
    metavar="GLOB",
    default=None,
    help='Expose only the layers whose label matches (e.g. "*add*"); '
    "OpenVINO fuses differently around exposed ones.",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for the runtime.")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="[USER@]HOST",
    help="Run the artifact on this device over SSH (repeat for several); the comparison is made here.",
)
@remote_python_option
@ssh_config_option
@ssh_timeout_option
@plot_option
@data_option
@json_option
def diagnose(
    artifacts,
    images,
    runtime,
    threshold,
    graph,
    layers,
    threads,
    hosts,
    remote_python,
    ssh_config,
    ssh_timeout,
    plot_path,
    data,
    as_json,
):
    """Where INT8 ARTIFACTs depart from their fake-quant graph, layer by layer.

    Runs N test images through each artifact with every quantized layer's output exposed
    and compares each layer with the same tensor of the fake-quant PyTorch graph (matched
    by name) and of the FP32 model: SQNR, the largest difference in quantization steps,
    the share of values one step or more off, and the first layer that departs.

    With --host the artifact runs on each device (over SSH, as evaluate --host; the device
    needs the runtime and edgecnn, not torch) and its layers come back to be compared here.
    The exit status is 2 if any host failed.

    \b
    Example:
      edgecnn diagnose runs/artifacts/resnet18-cpu-openvino-int8-*/ --images 512
      edgecnn diagnose A_openvino/ B_onnxruntime/ C_tflite/ --plot sqnr.png --json
      edgecnn diagnose runs/artifacts/resnet18-rpi-int8-*/ --host pi@pi5.local --images 64
    """
    from edgecnn.numerics.diagnose import diagnose as run
    from edgecnn.numerics.diagnose import plot
    from edgecnn.numerics.remote import diagnose_hosts

    def log(s):
        click.echo(s, err=True)

    common = dict(images=images, runtime=runtime, data=data, threshold=threshold, threads=threads)
    common |= dict(graph=graph, layers=layers, log=log)
    results, failed = [], []  # Diagnosis; HostResult of a host that failed
    if hosts:
        remote = dict(remote_python=remote_python, ssh_config=ssh_config, timeout=ssh_timeout)
        for r in (r for a in artifacts for r in diagnose_hosts(a, hosts, **remote, **common)):
            (results if r.ok else failed).append(r.result if r.ok else r)
    else:
        results = [run(a, **common) for a in artifacts]
    if plot_path and results:
        log(f"wrote {plot(results, plot_path)}")
    if as_json:
        doc = {"format": "edgecnn.diagnose/1", "diagnoses": [r.to_json() for r in results]}
        click.echo(json.dumps(doc | ({"failed": [r.to_dict() for r in failed]} if failed else {}), indent=2))
    else:
        for r in results:
            _print(r)
    for r in failed:
        click.echo(f"error: {r.error}", err=True)
    if failed:
        sys.exit(2)


def _print(r) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgecnn.numerics import fmt_db

    t = Table(
        title=f"{r.arch} · {r.runtime}{f' on {r.host}' if r.host else ''} · {r.images} images · "
        f"agreement {100 * r.agreement:.2f}%",
        caption="SQNR in dB: runtime vs fake-quant graph, runtime vs FP32, fake-quant graph vs FP32",
    )
    for col in ("#", "layer", "SQNR fq", "SQNR fp32", "fq vs fp32", "max steps", "off >= 1"):
        t.add_column(col, justify="left" if col == "layer" else "right", no_wrap=True)
    for lay in r.layers:
        style = "bold red" if lay.label == r.first_departure else None
        t.add_row(
            str(lay.index),
            lay.label,
            fmt_db(lay.sqnr_db),
            fmt_db(lay.sqnr_fp32_db),
            fmt_db(lay.fakequant_sqnr_fp32_db),
            f"{lay.max_steps:g}",
            f"{100 * lay.share_off:.3f}%",
            style=style,
        )
    console = Console(width=max(Console().width, 100))  # room for the layer names when piped
    console.print(t)
    first = r.first_departure or f"none (no layer has more than {100 * r.threshold:g}% of its values off)"
    console.print(f"first departure: {first}")
    if r.missing:
        console.print(f"not exposed by {r.runtime}: {', '.join(r.missing)}", style="yellow")
    if r.exposed_output_steps:
        console.print(
            f"note: exposing the layers moved {r.runtime}'s output by up to {r.exposed_output_steps:g} "
            f"steps (it fuses differently with them exposed)",
            style="yellow",
        )
