"""``edgecnn calibrate``, ``edgecnn qat`` and ``edgecnn export``."""

from __future__ import annotations

import json

import click

from edgecnn.cli.options import (
    DROP_POINTS,
    checkpoint_option,
    data_option,
    json_option,
    max_drop_option,
    method_option,
    qat_option,
    recipe_option,
)
from edgecnn.vocab import Precision, Runtime, Target

threads_option = click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: all cores)."
)


def _log(as_json: bool):
    return (lambda s: click.echo(s, err=True)) if as_json else click.echo


def _summary(r: dict) -> str:
    what = "QAT" if r.get("stage") == "qat" else f"PTQ ({r['method']})"
    if r.get("float_layers"):
        what += f" with {len(r['float_layers'])} layer(s) in float ({', '.join(r['float_layers'])})"
    return (
        f"{r['arch']}: {what}: FP32 top-1 {100 * r['fp32']['top1']:.2f}%, INT8 fake-quant top-1 "
        f"{100 * r['int8_fakequant']['top1']:.2f}% (drop {r['drop_points']:+.2f} points) -> {r['dir']}"
    )


@click.command()
@click.argument("arch")
@data_option
@checkpoint_option
@recipe_option
@method_option
@click.option(
    "--num-images",
    type=click.IntRange(min=1),
    default=None,
    help="Calibration images from the calibration split (default: the recipe's).",
)
@click.option(
    "--float-layers",
    metavar="LAYER[,LAYER...]",
    default=None,
    help="Leave these convolution / linear modules in float (conv1,fc; `edgecnn sensitivity` lists them).",
)
@click.option(
    "--max-drop",
    type=DROP_POINTS,
    default=None,
    metavar="POINTS",
    help="Where PTQ loses more than POINTS of top-1, leave the most sensitive layers in float (no QAT).",
)
@click.option("--force", is_flag=True, help="Recalibrate even if this calibration is cached.")
@threads_option
@json_option
def calibrate(
    arch, data, checkpoint, recipe, method, num_images, float_layers, max_drop, force, threads, as_json
):
    """Post-training INT8 calibration of ARCH; reports the fake-quant accuracy drop.

    The calibration set comes from the calibration split, disjoint from the test split.

    \b
    Example:
      edgecnn calibrate resnet18 --method entropy
      edgecnn calibrate vgg16 --checkpoint runs/vgg16/model.pt --num-images 256
      edgecnn calibrate resnet18 --max-drop 0.3
      edgecnn calibrate resnet18 --float-layers conv1,fc
    """
    from edgecnn.models import arch_info
    from edgecnn.quantize.stages import calibrate as run
    from edgecnn.recipes import load_recipe

    arch_info(arch)
    if float_layers is not None and max_drop is not None:
        raise click.UsageError("--float-layers and --max-drop conflict: --max-drop chooses the float layers")
    kw = {"data": data, "checkpoint": checkpoint, "method": method, "threads": threads, "log": _log(as_json)}
    if max_drop is not None:
        from edgecnn.mixed import within_budget

        b = within_budget(
            arch, load_recipe(arch, recipe), max_drop, num_images=num_images, allow_qat=False, **kw
        )
        r = {**b.stage_report, "budget": b.to_json()}
        click.echo(json.dumps(r, indent=2) if as_json else f"{_summary(r)}\n{b.describe()}")
        return
    names = [x.strip() for x in (float_layers or "").split(",") if x.strip()]
    r = run(
        arch, load_recipe(arch, recipe), num_images=num_images, float_layers=names, force=force, **kw
    ).as_dict()
    click.echo(json.dumps(r, indent=2) if as_json else _summary(r))


@click.command()
@click.argument("arch")
@data_option
@checkpoint_option
@recipe_option
@method_option
@click.option(
    "--max-drop",
    type=DROP_POINTS,
    default=None,
    metavar="POINTS",
    help="PTQ first, then PTQ with the most sensitive layers in float; fine-tune only if both "
    "lose more than POINTS of top-1.",
)
@click.option("--force", is_flag=True, help="Redo QAT even if this run is cached.")
@threads_option
@json_option
def qat(arch, data, checkpoint, recipe, method, max_drop, force, threads, as_json):
    """Quantization-aware fine-tuning of ARCH from calibrated scales (recipe's [qat] schedule).

    \b
    Example:
      edgecnn qat resnet18
      edgecnn qat googlenet --max-drop 0.3
    """
    from edgecnn.models import arch_info
    from edgecnn.quantize.stages import qat as run
    from edgecnn.recipes import load_recipe

    arch_info(arch)
    kw = {"data": data, "checkpoint": checkpoint, "method": method, "threads": threads, "log": _log(as_json)}
    if max_drop is not None:
        from edgecnn.mixed import within_budget

        b = within_budget(arch, load_recipe(arch, recipe), max_drop, **kw)
        r = {**b.stage_report, "budget": b.to_json()}
        click.echo(json.dumps(r, indent=2) if as_json else f"{_summary(r)}\n{b.describe()}")
        return
    r = run(arch, load_recipe(arch, recipe), force=force, **kw).as_dict()
    click.echo(json.dumps(r, indent=2) if as_json else _summary(r))


@click.command()
@click.argument("arch")
@click.option("--target", type=click.Choice(Target.values()), required=True, help="Where it will run.")
@click.option("--precision", type=click.Choice(Precision.values()), default="int8", show_default=True)
@click.option(
    "--runtime",
    type=click.Choice(Runtime.values()),
    default=None,
    help="Runtime on the target (default: openvino for cpu, tensorrt for jetson, tflite for rpi).",
)
@data_option
@checkpoint_option
@recipe_option
@method_option
@qat_option
@max_drop_option
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Artifact directory (default: $EDGECNN_HOME/runs/artifacts/...).",
)
@click.option("--force", is_flag=True, help="Re-export even if this artifact exists.")
@json_option
def export(
    arch, target, precision, runtime, data, checkpoint, recipe, method, use_qat, max_drop, out, force, as_json
):
    """Export ARCH for a target: the artifact and its metadata.json.

    Layers that will not run in INT8 on the backend are reported first and saved in
    float_layers.json beside the artifact.

    \b
    Example:
      edgecnn export resnet18 --target cpu
      edgecnn export resnet18 --target cpu --runtime onnxruntime
      edgecnn export googlenet --target rpi --qat
      edgecnn export vgg16 --target jetson --precision fp16
    """
    from edgecnn import api
    from edgecnn.artifact import load_artifact
    from edgecnn.export import resolve
    from edgecnn.models import arch_info

    arch_info(arch)
    resolve(target, runtime, precision)  # backend missing or unsupported: fail before any work
    if use_qat and max_drop is not None:
        raise click.UsageError("--qat and --max-drop conflict: --max-drop decides whether to run QAT")
    art = api.export(
        arch,
        target,
        recipe=recipe,
        precision=precision,
        runtime=runtime,
        data=data,
        checkpoint=checkpoint,
        method=method,
        qat=use_qat,
        max_drop=max_drop,
        out=out,
        force=force,
        log=_log(as_json),
    )
    path = art.dir
    meta = load_artifact(path).meta
    if as_json:
        click.echo(json.dumps({"artifact": str(path), **meta}, indent=2))
    else:
        click.echo(
            f"{path} ({meta['runtime']} {meta['precision']}; float layers: "
            f"{', '.join(meta['float_layers']) or 'none'})"
        )
