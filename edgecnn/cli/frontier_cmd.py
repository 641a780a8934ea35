"""``edgecnn frontier`` and ``edgecnn choose``."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from edgecnn.cli.options import (
    SECONDS,
    data_option,
    json_option,
    max_drop_option,
    qat_option,
    remote_python_option,
    ssh_config_option,
    ssh_timeout_option,
)

FOUR = "alexnet,vgg16,resnet18,googlenet"
COST_NAMES = ("p50", "p90", "energy", "size", "memory")


def _recipes(spec: str, archs: list[str]):
    """``quick``/``full``, a directory of <arch>.toml (optionally DIR:PROFILE), or one .toml for one arch."""
    from edgecnn.errors import EdgecnnError
    from edgecnn.recipes import PROFILES, load_recipe

    head, sep, tail = spec.rpartition(":")
    path, profile = (head, tail) if sep and tail in PROFILES else (spec, None)
    if spec not in PROFILES and Path(path).is_dir():
        out = {}
        for a in archs:
            f = Path(path) / f"{a}.toml"
            if not f.is_file():
                raise EdgecnnError(f"--recipe {path} has no {a}.toml; add it or drop {a} from --archs")
            out[a] = load_recipe(a, f"{f}:{profile}" if profile else str(f))
        return out
    if spec not in PROFILES and len(archs) > 1:
        raise EdgecnnError(
            f"--recipe {spec} is one file but --archs names {len(archs)} networks; pass a profile "
            f"({', '.join(PROFILES)}) or a directory holding <arch>.toml for each"
        )
    return {a: load_recipe(a, spec) for a in archs}


@click.command()
@click.option(
    "--targets",
    default="cpu,jetson,rpi",
    show_default=True,
    metavar="LIST",
    help="Targets (cpu, jetson, rpi) or device profiles (rpi4, jetson-agx-orin, ...), comma-separated.",
)
@click.option("--archs", default=FOUR, show_default=True, metavar="LIST", help="Networks, comma-separated.")
@click.option(
    "--precisions",
    default="int8,fp32",
    show_default=True,
    metavar="LIST",
    help="int8, fp16, fp32; a target that cannot run one is listed as not applicable.",
)
@click.option(
    "--cost",
    type=click.Choice(COST_NAMES),
    default="p50",
    show_default=True,
    help="What the frontier minimises: latency p50/p90, energy per image, artifact size, peak memory.",
)
@click.option(
    "--recipe",
    metavar="PROFILE|DIR[:PROFILE]",
    default="quick",
    show_default=True,
    help="Recipe profile of each recipes/<arch>.toml, or a directory holding <arch>.toml files.",
)
@data_option
@qat_option
@max_drop_option
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    required=True,
    help="Folder for frontier.json/.csv/.png, report.html and report.md (your files in it are kept).",
)
@click.option("--force", is_flag=True, help="Re-export, re-evaluate and re-measure every combination.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: all cores).")
@click.option(
    "--min-seconds",
    type=SECONDS,
    default=2.0,
    show_default=True,
    help="Latency on this machine: time each artifact at least this long.",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="TARGET=[USER@]HOST",
    help="Measure TARGET's accuracy and latency on this device over SSH (repeatable), "
    "e.g. --host rpi=pi@10.0.0.7 --host jetson=nvidia@orin.",
)
@remote_python_option
@ssh_config_option
@ssh_timeout_option
@click.option(
    "--imagenet",
    "--published",
    "imagenet",
    is_flag=True,
    help="No training: the ImageNet networks at --image-size, real artifacts and latency, accuracy "
    "quoted from published figures (or measured with --data and --weights imagenet).",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=8),
    default=None,
    metavar="PX",
    help="--imagenet: input side in pixels (default 224, the size published figures are for).",
)
@click.option(
    "--weights",
    default=None,
    metavar="imagenet",
    help="--imagenet with --data: torchvision's ImageNet checkpoints (sha256-checked), to measure accuracy.",
)
@click.option(
    "--calib-images",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="--imagenet: INT8 calibration images.",
)
@json_option
def frontier(**o):
    """Deploy every network x target x precision and draw the accuracy / cost frontier.

    Each combination is an `edgecnn deploy` run: cached, so the same command again only
    reads the caches. Per target (device) the Pareto set of top-1 against --cost is
    flagged. Latency is measured on this machine for cpu, on the device for a target
    given a --host, and predicted from the device profile for absent devices; accuracy
    is measured on the --host device, else here (a stand-in for another device's
    runtime: accuracy_where says which).

    \b
    Example:
      edgecnn frontier --imagenet --out frontier-224/     # minutes: published accuracy, real latency
      edgecnn frontier --out frontier/                    # trains, quantizes, evaluates: 35 min to 2 h
      edgecnn frontier --max-drop 0.3 --out frontier-qat/
      edgecnn frontier --targets cpu,rpi4,jetson-agx-orin --archs resnet18,googlenet --cost size --out f2/
      edgecnn frontier --host rpi=pi@10.0.0.7 --host jetson=nvidia@orin --out frontier-devices/
    """
    from edgecnn.frontier import parse_hosts, parse_list, parse_targets
    from edgecnn.models import list_archs

    archs = parse_list(o["archs"], list_archs(include_test=True), "archs")
    precisions = parse_list(o["precisions"], ("int8", "fp16", "fp32"), "precisions")
    targets = parse_targets(o["targets"])
    hosts = parse_hosts(o["hosts"], targets)
    _check_mode(
        o["imagenet"],
        image_size=o["image_size"],
        weights=o["weights"],
        recipe=o["recipe"],
        qat=o["use_qat"],
        max_drop=o["max_drop"],
    )
    run = _run_imagenet if o["imagenet"] else _run_trained
    path, result = run(archs, targets, precisions, hosts, o)
    _print_result(path, result, o["cost"], o["as_json"])


def _common(o: dict, hosts: dict) -> dict:
    """The options both kinds of frontier take, from the command's."""
    return {
        "out": o["out"],
        "cost": o["cost"],
        "data": o["data"],
        "force": o["force"],
        "threads": o["threads"],
        "bench_seconds": o["min_seconds"],
        "hosts": hosts,
        "remote_python": o["remote_python"],
        "ssh_config": o["ssh_config"],
        "ssh_timeout": o["ssh_timeout"],
        "log": (lambda s: click.echo(s, err=True)) if o["as_json"] else click.echo,
        "command": (
            "edgecnn frontier " + " ".join(shlex.quote(a) for a in sys.argv[2:])
            if len(sys.argv) > 1
            else None
        ),
    }


def _run_imagenet(archs, targets, precisions, hosts, o):
    from edgecnn.imagenet_frontier import ImagenetOptions, run_imagenet_frontier

    opts = ImagenetOptions(
        image_size=o["image_size"] or 224,
        weights=o["weights"],
        calib_images=o["calib_images"],
        **_common(o, hosts),
    )
    return run_imagenet_frontier(archs, targets, precisions, opts)


def _run_trained(archs, targets, precisions, hosts, o):
    from edgecnn.frontier import FrontierOptions, run_frontier

    recipes = _recipes(o["recipe"], archs)
    opts = FrontierOptions(
        recipe_for=recipes.__getitem__, qat=o["use_qat"], max_drop=o["max_drop"], **_common(o, hosts)
    )
    return run_frontier(archs, targets, precisions, opts)


def _check_mode(imagenet: bool, **opts) -> None:
    """Options of one mode given to the other: one line, before any work."""
    from edgecnn.errors import EdgecnnError

    if imagenet:
        wrong = [f"--{k.replace('_', '-')}" for k in ("qat", "max_drop") if opts[k] not in (None, False)]
        if opts["recipe"] != "quick":
            wrong.insert(0, "--recipe")
        if wrong:
            raise EdgecnnError(f"--imagenet trains nothing, so {', '.join(wrong)} do(es) not apply; drop it")
        return
    for k, flag in (("image_size", "--image-size"), ("weights", "--weights")):
        if opts[k]:
            raise EdgecnnError(
                f"{flag} applies to --imagenet (a trained frontier takes its size and weights from "
                f"the recipe); add --imagenet or drop it"
            )


def _print_result(path, result, cost: str, as_json: bool) -> None:
    """The Pareto points, those with no published accuracy (--imagenet), and where the report is."""
    if as_json:
        click.echo(json.dumps({"out": str(path), **result.to_json()}, indent=2, default=str))
    else:
        from edgecnn.frontier import accuracy_cell

        imagenet = result.kind is not None
        for p in result.points:
            if p.pareto:
                acc = accuracy_cell(p) if imagenet else f"{100 * p.top1:.2f}%"
                click.echo(
                    f"  Pareto on {p.device}: {p.arch} {p.precision} top-1 {acc}, "
                    f"{cost} {p.cost:.3g} {result.cost_unit} ({p.get(_src(cost)) or 'n/a'})"
                )
        for p in result.points:
            if p.top1 is None:
                click.echo(
                    f"  {p.arch} {p.precision} on {p.device}: {cost} {_fmt(p.cost)} "
                    f"{result.cost_unit}, accuracy: not published"
                )
        basis = f" (accuracy: {result.basis})" if imagenet else ""
        click.echo(
            f"{len(result.points)} runs, {len(result.failed)} failed, {result.seconds:.0f} s{basis}: "
            f"{Path(path) / 'report.html'}"
        )
    if result.failed:
        sys.exit(1)


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _src(cost: str) -> str:
    from edgecnn.frontier import COSTS

    return COSTS[cost][3]


@click.command()
@click.option(
    "--target",
    "device",
    required=True,
    metavar="DEVICE",
    help="Device profile or target alias (rpi5, rpi, jetson-orin-nano, cpu, ...).",
)
@click.option("--max-latency", default=None, metavar="TIME", help="Latency limit, e.g. 50ms or 0.05s.")
@click.option("--min-accuracy", default=None, metavar="ACC", help="Top-1 floor, e.g. 0.9 or 90%.")
@click.option(
    "--cost",
    type=click.Choice(COST_NAMES),
    default="p50",
    show_default=True,
    help="Among equally accurate runs, the cheapest by this wins.",
)
@click.option(
    "--latency",
    "stat",
    type=click.Choice(("p50", "p90", "p99")),
    default="p90",
    show_default=True,
    help="Which latency percentile --max-latency limits.",
)
@click.option(
    "--precision",
    type=click.Choice(("int8", "fp16", "fp32")),
    default=None,
    help="Only consider this precision.",
)
@click.option(
    "--from",
    "sources",
    multiple=True,
    metavar="DIR",
    help="Frontier output directory (repeatable); default: every frontier run in $EDGECNN_HOME.",
)
@json_option
def choose(device, max_latency, min_accuracy, cost, stat, precision, sources, as_json):
    """Pick the network to ship on a device from frontier results, and say why.

    The most accurate run within the limits wins; runs inside its 95% interval count as
    equally accurate and the cheapest of them (--cost) is picked. Exit 1 when nothing
    meets the limits (the message says what to relax).

    \b
    Example:
      edgecnn choose --target rpi5 --max-latency 50ms --min-accuracy 0.9
      edgecnn choose --target cpu --cost size --from frontier/
    """
    from edgecnn.frontier import choose as pick
    from edgecnn.frontier import load_points, parse_accuracy, parse_latency

    lat = None if max_latency is None else parse_latency(max_latency)
    acc = None if min_accuracy is None else parse_accuracy(min_accuracy)
    res = pick(
        load_points(sources),
        device,
        max_latency_ms=lat,
        min_accuracy=acc,
        cost=cost,
        latency=stat,
        precision=precision,
    )
    if as_json:
        click.echo(json.dumps(res.to_json(), indent=2, default=str))
    else:
        click.echo(res.paragraph)
        if res.choice and res.choice.bundle:
            click.echo(f"bundle: {res.choice.bundle}")
    if not res.ok:
        sys.exit(1)
