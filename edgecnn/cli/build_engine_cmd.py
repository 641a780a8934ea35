"""``edgecnn build-engine``: the TensorRT engine of a Jetson artifact, built on the device."""

from __future__ import annotations

import json
import shlex

import click

from edgecnn.cli.options import json_option
from edgecnn.errors import EdgecnnError


@click.command("build-engine")
@click.argument("artifact", type=click.Path(exists=True))
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Engine file (default: ARTIFACT/model.engine).",
)
@click.option(
    "--builder",
    type=click.Choice(["auto", "trtexec", "python"]),
    default="auto",
    show_default=True,
    help="trtexec where found (auto), or the TensorRT Python API.",
)
@click.option(
    "--trtexec",
    "trtexec_path",
    metavar="PATH",
    default=None,
    help="trtexec binary (default: PATH, then JetPack's /usr/src/tensorrt/bin/trtexec).",
)
@click.option("--min-batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--opt-batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--max-batch", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--workspace-mb", type=click.IntRange(min=1), default=None, help="Builder workspace limit (MiB)."
)
@click.option(
    "--tensorrt-version",
    metavar="X.Y",
    default=None,
    help="TensorRT version to build for (default: trtexec's banner, else the tensorrt module); "
    "10.x gets precision flags, 11.x a strongly typed build.",
)
@click.option(
    "--timing-cache",
    type=click.Path(dir_okay=False),
    default=None,
    help="TensorRT timing cache file (default: $EDGECNN_HOME/engines/timing/<TensorRT>-<GPU>.cache).",
)
@click.option("--no-timing-cache", is_flag=True, help="Build without a timing cache.")
@click.option(
    "--fp16-outside-qdq",
    is_flag=True,
    help="TensorRT 11, int8: build from the graph with FP16 outside its Q/DQ pairs (faster float layers; "
    "the FP16 scales move the INT8 grid a little). Default: as written, FP32 outside the Q/DQ pairs.",
)
@click.option("--no-cache", is_flag=True, help="Do not also store the engine in $EDGECNN_HOME/engines.")
@click.option("--dry-run", is_flag=True, help="Check the artifact and print the command; build nothing.")
@json_option
def build_engine(
    artifact,
    out,
    builder,
    trtexec_path,
    min_batch,
    opt_batch,
    max_batch,
    workspace_mb,
    tensorrt_version,
    timing_cache,
    no_timing_cache,
    fp16_outside_qdq,
    no_cache,
    dry_run,
    as_json,
):
    """Build the TensorRT engine of a Jetson ARTIFACT on this GPU.

    Checks the artifact's sha256, runs trtexec (or the TensorRT Python builder), writes
    ARTIFACT/model.engine with its model.engine.json sidecar (TensorRT version, GPU,
    compute capability) and stores it in $EDGECNN_HOME/engines, where `edgecnn
    evaluate` and `edgecnn bench` find it. An engine runs only on the GPU and TensorRT
    version it was built with: build it on the device. On TensorRT 10 the precision
    comes from trtexec's flags; TensorRT 11 has none (strongly typed networks): there
    the ONNX's own types decide (--fp16-outside-qdq: an INT8 artifact's FP16 rewrite).

    \b
    Example:
      edgecnn export resnet18 --target jetson --out resnet18-jetson
      edgecnn build-engine resnet18-jetson              # on the Jetson
      edgecnn build-engine resnet18-jetson --dry-run    # print the trtexec command
      edgecnn build-engine resnet18-jetson --dry-run --tensorrt-version 11.4
    """
    from edgecnn.tensorrt.build import build_artifact
    from edgecnn.tensorrt.engine_cache import BatchProfile

    if no_timing_cache and timing_cache:
        raise EdgecnnError("--timing-cache and --no-timing-cache exclude each other; pass one")
    profile = BatchProfile(min_batch, opt_batch, max_batch)
    log = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    r = build_artifact(
        artifact,
        out=out,
        builder=builder,
        trtexec=trtexec_path,
        profile=profile,
        workspace_mb=workspace_mb,
        dry_run=dry_run,
        cache=not no_cache,
        tensorrt_version=tensorrt_version,
        timing_cache=False if no_timing_cache else (timing_cache or True),
        fp16_rewrite=fp16_outside_qdq,
        log=log,
    )
    if as_json:
        click.echo(json.dumps(r, indent=2))
    elif dry_run:
        click.echo(
            shlex.join(r["command"])
            if r["command"]
            else f"TensorRT {r['plan']['tensorrt']} Python builder: {r['precision']} engine -> {r['engine']} "
            f"(batch {profile.min}/{profile.opt}/{profile.max}, builder flags "
            f"{','.join(r['plan']['builder_flags']) or 'none'}, strongly typed: "
            f"{r['plan']['strongly_typed']})"
        )
