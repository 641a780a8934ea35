"""The ``edgecnn`` command line: thin Click commands that call the library."""

from __future__ import annotations

import shlex
import sys

import click

from edgecnn import outdir
from edgecnn.cli.terminal import capture_noise, one_line_errors
from edgecnn.version import __version__


class _Group(click.Group):
    """A group whose every user error (edgecnn's, Click's usage errors, Ctrl-C) is one ``error:`` line."""

    def make_context(self, *args, **kwargs):
        with one_line_errors():
            return super().make_context(*args, **kwargs)

    def main(self, args=None, *rest, **kwargs):
        argv = sys.argv[1:] if args is None else list(args)
        outdir.COMMAND.set(" ".join(["edgecnn", *(shlex.quote(str(a)) for a in argv)]))  # what made a folder
        return super().main(args, *rest, **kwargs)

    def invoke(self, ctx):
        with one_line_errors():
            return super().invoke(ctx)


@click.group("edgecnn", cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecnn")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Show the libraries' own messages (torch, LiteRT/TensorFlow, OpenVINO); by default they "
    "go to a log in $EDGECNN_HOME/logs.",
)
@click.pass_context
def cli(ctx, verbose):
    """Put AlexNet, VGG16, ResNet18 and GoogLeNet on edge hardware.

    Exit status: 0 done; 1 where a command says so (frontier: a run failed; choose: nothing
    fits); 2 an error (one line starting `error:`); 130 interrupted (the same command resumes).

    \b
    Example:
      edgecnn models
      edgecnn deploy resnet18 --target cpu
      edgecnn --verbose export resnet18 --target rpi
    """
    undo = None if verbose else capture_noise(ctx.invoked_subcommand or "edgecnn")
    if undo is not None:
        ctx.call_on_close(undo)


def _register() -> None:
    # Each command module imports only click at top level: `edgecnn --help` stays fast.
    from edgecnn.cli.bench_cmd import bench
    from edgecnn.cli.build_engine_cmd import build_engine
    from edgecnn.cli.cache_cmd import cache
    from edgecnn.cli.deploy_cmd import deploy
    from edgecnn.cli.devices_cmd import devices
    from edgecnn.cli.diagnose_cmd import diagnose
    from edgecnn.cli.evaluate_cmd import evaluate
    from edgecnn.cli.frontier_cmd import choose, frontier
    from edgecnn.cli.models_cmd import models
    from edgecnn.cli.quantize_cmd import calibrate, export, qat
    from edgecnn.cli.sensitivity_cmd import sensitivity
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
    cli.add_command(cache)
    cli.add_command(diagnose)
    cli.add_command(sensitivity)


_register()


def main():  # console-script entry point
    try:
        cli(prog_name="edgecnn")  # `python -m edgecnn` says `edgecnn` in its messages too
    except KeyboardInterrupt:  # before or after a command ran (a command's own Ctrl-C is handled inside)
        from edgecnn.cli.terminal import INTERRUPTED, INTERRUPTED_EXIT, fail

        fail(INTERRUPTED, INTERRUPTED_EXIT)
