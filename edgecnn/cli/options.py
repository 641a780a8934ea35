"""Option decorators shared by several commands."""

from __future__ import annotations

import math

import click

from edgecnn.quantize.calibset import METHODS


class Number(click.ParamType):
    """A finite number in [min, max]: the one check of every number option (``nan`` and ``inf``
    are refused, which ``float`` and ``click.FloatRange`` let through)."""

    name = "number"

    def __init__(self, min: float | None = None, max: float | None = None, *, min_open: bool = False):
        self.min, self.max, self.min_open = min, max, min_open

    def convert(self, value, param, ctx) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.min is not None and (v < self.min or (self.min_open and v == self.min)):
            self.fail(f"{value!r} must be {'>' if self.min_open else '>='} {self.min:g}", param, ctx)
        if self.max is not None and v > self.max:
            self.fail(f"{value!r} must be <= {self.max:g}", param, ctx)
        return v


SECONDS = Number(min=0)
DROP_POINTS = Number(min=0)  # a top-1 drop in percentage points

data_option = click.option(
    "--data",
    metavar="PATH",
    default=None,
    help="ImageFolder directory (root/<class>/<images>); default: Fashion-MNIST.",
)
recipe_option = click.option(
    "--recipe",
    metavar="PROFILE|PATH[:PROFILE]",
    default="quick",
    show_default=True,
    help="Recipe profile (quick, full) of recipes/<arch>.toml, or a recipe file.",
)
weights_option = click.option(
    "--weights",
    metavar="imagenet|PATH",
    default=None,
    help="Start from torchvision's ImageNet weights, a torchvision .pth or an edgecnn checkpoint.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
qat_option = click.option("--qat", "use_qat", is_flag=True, help="INT8 by QAT (default: PTQ).")
max_drop_option = click.option(
    "--max-drop",
    type=DROP_POINTS,
    default=None,
    metavar="POINTS",
    help="INT8: run QAT only where PTQ loses more than POINTS of top-1.",
)
remote_python_option = click.option(
    "--remote-python",
    envvar="EDGECNN_REMOTE_PYTHON",
    default="python3",
    show_default=True,
    metavar="PATH",
    help="--host: the device's Python with edgecnn (env EDGECNN_REMOTE_PYTHON).",
)
ssh_timeout_option = click.option(
    "--timeout",
    "ssh_timeout",
    type=Number(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="--host: stop a device's run (copy, run, answer) after SECONDS, as a one-line error for that host "
    "(default: no limit; an unreachable device still fails after ssh's ConnectTimeout).",
)
ssh_config_option = click.option(
    "--ssh-config",
    envvar="EDGECNN_SSH_CONFIG",
    default=None,
    metavar="FILE",
    help="--host: ssh config file, ssh -F (env EDGECNN_SSH_CONFIG; default ~/.ssh/config).",
)
plot_option = click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="Also write the plot to FILE (.png, .svg or .pdf).",
)


checkpoint_option = click.option(
    "--checkpoint",
    metavar="PATH",
    default=None,
    help="Float edgecnn checkpoint to quantize (default: the recipe's float training run, made if missing).",
)
method_option = click.option(
    "--method",
    type=click.Choice(METHODS),
    default=None,
    help="Activation calibration method (default: the recipe's).",
)
