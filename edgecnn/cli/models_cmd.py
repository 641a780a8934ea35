"""``edgecnn models``."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("pattern", default="*")
@click.option(
    "--image-size",
    type=click.IntRange(min=1),
    default=224,
    show_default=True,
    help="Square input side (px) at which MACs are counted.",
)
@click.option("--small-input", is_flag=True, help="Show the low-resolution variants (changed stem and head).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--all", "include_test", is_flag=True, help="Include the tiny test_* variants.")
def models(pattern, image_size, small_input, as_json, include_test):
    """List the architectures matching PATTERN (default: all) with parameters and MACs.

    MACs count Conv2d and Linear multiply-accumulates at --image-size (torchvision's
    convention: FLOPs = 2 x MACs). ImageNet top-1 is the figure published with
    torchvision's weights for the full-size network, not one measured here.

    \b
    Example:
      edgecnn models
      edgecnn models 'res*' --small-input --image-size 32 --json
    """
    import torch

    from edgecnn.errors import EdgecnnError
    from edgecnn.models import arch_info, count_macs, count_params, create, list_archs, min_input_size

    names = list_archs(pattern, include_test=include_test)
    if not names:
        raise EdgecnnError(f"no architecture matches '{pattern}'; known: {', '.join(list_archs())}")
    rows = []
    for name in names:
        info = arch_info(name)
        with torch.device("meta"):  # shapes only: nothing is allocated or computed
            model = create(name, small_input=small_input)
        try:
            macs = count_macs(model, (1, 3, image_size, image_size))
        except RuntimeError:  # PyTorch: "output size is too small"
            hint = "a larger --image-size" if small_input else "--small-input or a larger --image-size"
            variant = " (small-input)" if small_input else ""
            raise EdgecnnError(
                f"{name}{variant} needs images of at least {min_input_size(model)} px, "
                f"got --image-size {image_size}; use {hint}"
            ) from None
        published = info.published if not small_input else None
        rows.append(
            {
                "name": name,
                "family": info.family,
                "params": count_params(model),
                "macs": macs,
                "image_size": image_size,
                "small_input": small_input,
                "published_top1": published.top1 if published else None,
                "published_top5": published.top5 if published else None,
                "published_source": published.source if published else None,
                "small_input_note": info.small_input_note,
                "paper": info.paper,
                "test_variant": info.test_variant,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _print_table(rows, image_size, small_input)


def _print_table(rows: list[dict], image_size: int, small_input: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    variant = "small-input variants" if small_input else "full-size variants"
    table = Table(
        title=f"edgecnn architectures ({variant}, MACs at {image_size}x{image_size})",
        caption="ImageNet top-1: published with torchvision's weights for the full-size network "
        "(FP32, 224 px), not measured by edgecnn",
    )
    table.add_column("name", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("GMACs", justify="right", no_wrap=True)
    table.add_column("ImageNet top-1 (published)", justify="right", no_wrap=True)
    table.add_column("source", ratio=1)
    table.add_column("small-input variant", ratio=2)
    for r in rows:
        top1 = f"{r['published_top1']:.3f}%" if r["published_top1"] is not None else "-"
        table.add_row(
            r["name"],
            f"{r['params']:,}",
            f"{r['macs'] / 1e9:.3f}",
            top1,
            r["published_source"] or "-",
            r["small_input_note"],
        )
    Console().print(table)
