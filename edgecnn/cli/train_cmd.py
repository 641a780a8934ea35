"""``edgecnn train``."""

from __future__ import annotations

import json

import click

from edgecnn.cli.options import data_option, json_option, recipe_option, weights_option


@click.command()
@click.argument("arch")
@data_option
@weights_option
@recipe_option
@click.option("--reset-head", is_flag=True, help="Drop the checkpoint's classifier head (new label set).")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Run directory (default: $EDGECNN_HOME/runs/train/<arch>-<profile>-<key>).",
)
@click.option("--force", is_flag=True, help="Retrain even if this run finished or was interrupted.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: all cores).")
@json_option
def train(arch, data, weights, recipe, reset_head, out, force, threads, as_json):
    """Train or fine-tune ARCH with its recipe and report test top-1/top-5.

    Checkpoints are written atomically; an interrupted run resumes where it stopped and
    a finished one is reused (--force retrains).

    \b
    Example:
      edgecnn train resnet18 --recipe quick
      edgecnn train googlenet --weights imagenet --data ./my_images
    """
    from edgecnn.models import arch_info
    from edgecnn.recipes import load_recipe
    from edgecnn.train import train as run_train

    arch_info(arch)  # unknown name: error with suggestions before any data is loaded
    r = load_recipe(arch, recipe)
    log = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    result = run_train(
        arch,
        r,
        data=data,
        weights=weights,
        reset_head=reset_head,
        out_dir=out,
        force=force,
        threads=threads,
        log=log,
    )
    if as_json:
        click.echo(
            json.dumps(
                {**result.report, "checkpoint": str(result.checkpoint), "cached": result.cached}, indent=2
            )
        )
