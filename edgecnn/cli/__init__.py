"""The ``edgecnn`` command line: thin Click commands that call the library."""

from __future__ import annotations

import sys

import click

from edgecnn import __version__
from edgecnn.errors import EdgecnnError


class _Group(click.Group):
    """A group that turns :class:`EdgecnnError` into one line on stderr and exit 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgecnnError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecnn")
def cli():
    """Put AlexNet, VGG16, ResNet18 and GoogLeNet on edge hardware.

    \b
    Example:
      edgecnn models
      edgecnn deploy resnet18 --target cpu
      edgecnn frontier --targets cpu,jetson,rpi --out frontier/
    """


def _register() -> None:
    # Each command module imports only click at top level: `edgecnn --help` stays fast.
    from edgecnn.cli.bench_cmd import bench
    from edgecnn.cli.build_engine_cmd import build_engine
    from edgecnn.cli.deploy_cmd import deploy
    from edgecnn.cli.devices_cmd import devices
    from edgecnn.cli.evaluate_cmd import evaluate
    from edgecnn.cli.frontier_cmd import choose, frontier
    from edgecnn.cli.models_cmd import models
    from edgecnn.cli.quantize_cmd import calibrate, export, qat
    from edgecnn.cli.train_cmd import train

    for command in (models, train, calibrate, qat, export):
        cli.add_command(command)
    cli.add_command(evaluate)
    cli.add_command(devices)
    cli.add_command(bench)
    cli.add_command(build_engine)
    cli.add_command(deploy)
    cli.add_command(frontier)
    cli.add_command(choose)


_register()


def main():  # console-script entry point
    cli()
