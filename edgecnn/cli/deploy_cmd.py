"""``edgecnn deploy``."""

from __future__ import annotations

import json
import sys

import click

from edgecnn.cli.options import (
    SECONDS,
    data_option,
    json_option,
    max_drop_option,
    method_option,
    qat_option,
    recipe_option,
    ssh_timeout_option,
    weights_option,
)


@click.command()
@click.argument("arch")
@click.option("--target", required=True, metavar="cpu|jetson|rpi", help="Where it will run.")
@click.option(
    "--device",
    default=None,
    metavar="PROFILE",
    help="Device profile to predict for when not the target's default (e.g. rpi4 for --target rpi).",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="[USER@]HOST",
    help="Measure accuracy and latency on this device over SSH (repeat for several); default: both "
    "here for cpu; otherwise accuracy here (a stand-in) and latency predicted from the profile.",
)
@data_option
@weights_option
@click.option(
    "--checkpoint", metavar="PATH", default=None, help="Finished float edgecnn checkpoint (skips training)."
)
@recipe_option
@click.option("--precision", type=click.Choice(("int8", "fp16", "fp32")), default="int8", show_default=True)
@click.option(
    "--runtime",
    type=click.Choice(("openvino", "onnxruntime", "tensorrt", "tflite")),
    default=None,
    help="Runtime on the target (default: openvino for cpu, tensorrt for jetson, tflite for rpi).",
)
@method_option
@qat_option
@max_drop_option
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Bundle directory (default: $EDGECNN_HOME/runs/deploy/<arch>-<target>-<precision>-<key>).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Re-export, re-evaluate and re-measure (training and quantization stay cached).",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: all cores).")
@click.option(
    "--min-seconds", type=SECONDS, default=2.0, show_default=True, help="Latency: time at least this long."
)
@click.option(
    "--remote-python",
    envvar="EDGECNN_REMOTE_PYTHON",
    default=None,
    metavar="PATH",
    help="--host: the device's Python with edgecnn.",
)
@click.option(
    "--ssh-config",
    envvar="EDGECNN_SSH_CONFIG",
    default=None,
    metavar="FILE",
    help="--host: ssh config file (ssh -F).",
)
@ssh_timeout_option
@json_option
def deploy(
    arch, target, recipe, use_qat, min_seconds, remote_python, ssh_config, ssh_timeout, as_json, **options
):
    """Train, quantize, export, evaluate and time ARCH for --target: one bundle with report.json.

    Every stage is cached: the same command again takes seconds. Accuracy and latency
    are measured here for --target cpu and on the devices with --host (over SSH);
    otherwise accuracy runs here as a stand-in (accuracy_where says so) and latency is
    predicted from the device profile (labelled "predicted" with its error band). The
    bundle holds artifact/, report.json (schema edgecnn.report/1), report.md, predict.py
    and RUN.md.

    \b
    Example:
      edgecnn deploy resnet18 --target cpu
      edgecnn deploy googlenet --target rpi --max-drop 0.5
      edgecnn deploy resnet18 --target rpi --host pi@pi5.local --out bundles/rpi
    """
    from edgecnn.deploy import BenchOptions, DeployOptions, SshOptions
    from edgecnn.deploy import deploy as run
    from edgecnn.errors import EdgecnnError
    from edgecnn.export import resolve
    from edgecnn.models import arch_info
    from edgecnn.recipes import load_recipe

    arch_info(arch)
    try:
        opts = DeployOptions(
            qat=use_qat,
            bench=BenchOptions(seconds=min_seconds),
            ssh=SshOptions(remote_python=remote_python, config=ssh_config, timeout=ssh_timeout),
            **options,  # the other options are named as DeployOptions' fields
        )
    except EdgecnnError as e:
        raise click.UsageError(str(e)) from None
    resolve(target, opts.runtime, opts.precision)
    log = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    path, r = run(arch, target, recipe=load_recipe(arch, recipe), options=opts, log=log)
    if as_json:
        click.echo(json.dumps({"bundle": str(path), **r.to_json()}, indent=2, default=str))
    else:
        _print_summary(path, r)
    if any(h.get("error") or h.get("accuracy_error") for h in r.hosts or ()):
        sys.exit(2)


def _print_summary(path, r) -> None:
    """The report (an edgecnn.results.Report) in a few lines: accuracy, latency (PREDICTED when
    it is), reused stages, notes."""
    a, lat = r.accuracy, r.latency_ms
    drop = "" if a.drop is None else f" (drop {a.drop:+.2f} points vs FP32)"
    click.echo(
        f"{r.arch} on {r.target} ({r.device}, {r.runtime} {r.precision}): top-1 "
        f"{100 * a.top1:.2f}%{drop} in {a.runtime} ({r.accuracy_where})"
    )
    if r.latency_source == "predicted":
        lo, hi = r.latency_band_ms
        click.echo(f"  latency PREDICTED p50 {lat.p50:.3f} ms (band {lo:.3f}-{hi:.3f} ms), not measured")
    else:
        click.echo(f"  latency measured p50 {lat.p50:.3f} ms, p99 {lat.p99:.3f} ms (n={lat.n})")
    cached = [k for k, s in r.stages.items() if s and s.get("cached")]
    click.echo(f"  stages reused: {', '.join(cached) or 'none'}")
    for n in r.notes:
        click.echo(f"  note: {n}")
    if r.target != "cpu":
        click.echo(
            f"  on the device: {path / 'RUN.md'} (install, "
            + ("build the TensorRT engine, " if r.runtime == "tensorrt" else "")
            + "run, time)"
        )
    click.echo(str(path))
