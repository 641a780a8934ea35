"""``edgecnn sensitivity``."""

from __future__ import annotations

import json

import click

from edgecnn.cli.options import (
    checkpoint_option,
    data_option,
    json_option,
    method_option,
    plot_option,
    recipe_option,
)


@click.command()
@click.argument("arch")
@data_option
@checkpoint_option
@recipe_option
@method_option
@click.option(
    "--images",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Validation images to score each configuration on (default: the whole validation split).",
)
@click.option(
    "--calib-images",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Calibration images (default: the recipe's).",
)
@click.option(
    "--layers",
    default=None,
    metavar="A,B,...",
    help="Only these layers (module paths, e.g. conv1,layer1.0.conv2; default: every conv and linear).",
)
@plot_option
@json_option
def sensitivity(arch, data, checkpoint, recipe, method, images, calib_images, layers, plot_path, as_json):
    """Rank ARCH's quantized layers by what quantizing each one costs.

    Each convolution and linear layer is quantized alone, and left alone in float with the
    rest quantized (the PT2E quantizer's per-node decision, calibrated each time); top-1 on
    the validation split and the SQNR of the logits against FP32. Most sensitive first.

    \b
    Example:
      edgecnn sensitivity resnet18 --images 2000 --plot sensitivity.png
      edgecnn sensitivity googlenet --layers conv1,fc --json
    """
    from edgecnn.models import arch_info
    from edgecnn.numerics.sensitivity import plot
    from edgecnn.numerics.sensitivity import sensitivity as run
    from edgecnn.recipes import load_recipe

    arch_info(arch)

    def log(s):
        click.echo(s, err=True)

    names = [x.strip() for x in layers.split(",") if x.strip()] if layers else None
    r = run(
        arch,
        load_recipe(arch, recipe),
        data=data,
        checkpoint=checkpoint,
        method=method,
        images=images,
        calib_images=calib_images,
        layers=names,
        log=log,
    )
    if plot_path:
        log(f"wrote {plot(r, plot_path)}")
    if as_json:
        click.echo(json.dumps(r.to_json(), indent=2))
        return
    _print(r)


def _print(r) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgecnn.numerics import fmt_db

    t = Table(
        title=f"{r.arch} · {r.method} · {r.val_images} val images · FP32 {100 * r.fp32_top1:.2f}% · "
        f"INT8 {100 * r.int8_top1:.2f}% ({fmt_db(r.int8_sqnr_db)} dB)"
    )
    for col in (
        "rank",
        "layer",
        "only it INT8: top-1",
        "SQNR dB",
        "all but it INT8: top-1",
        "SQNR dB",
        "recovered points",
    ):
        t.add_column(col, justify="left" if col == "layer" else "right", no_wrap=True)
    for i, x in enumerate(r.layers, 1):
        t.add_row(
            str(i),
            x.layer,
            f"{100 * x.only_top1:.2f}%",
            fmt_db(x.only_sqnr_db),
            f"{100 * x.without_top1:.2f}%",
            fmt_db(x.without_sqnr_db),
            f"{x.recovered_points:+.2f}",
        )
    Console(width=max(Console().width, 110)).print(t)
