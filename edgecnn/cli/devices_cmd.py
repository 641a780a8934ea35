"""``edgecnn devices`` and ``edgecnn devices fit`` (hidden old name: ``devices calibrate``)."""

from __future__ import annotations

import copy
import json
import math

import click

from edgecnn.cli.options import (
    Number,
    json_option,
    remote_python_option,
    ssh_config_option,
    ssh_timeout_option,
)


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def devices(ctx, as_json):
    """List the device profiles: peak ops, memory, power, runtimes, and which one this machine is.

    Profiles are devices/<name>.toml (every figure with its source) plus `host`, built
    from this machine's CPU. Aliases: cpu = host, jetson = jetson-orin-nano, rpi = rpi5.

    \b
    Example:
      edgecnn devices
      edgecnn devices --json
      edgecnn devices fit --nets
    """
    if ctx.invoked_subcommand is not None:
        return
    from edgecnn.devices import detect_device, list_devices, load_device

    here = detect_device()
    profiles = [load_device(n) for n in list_devices()]
    if as_json:
        rows = []
        for p in profiles:
            d = p.to_dict()
            d["this_machine"] = p.name == here
            rows.append(d)
        click.echo(json.dumps(rows, indent=2))
        return
    _print_table(profiles, here)


def _print_table(profiles, here: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgecnn.devices.predict import cited_points

    table = Table(
        title="edgecnn device profiles (descriptions: --json)",
        caption="Peak = dense tera-ops/s of the default runtime's unit (figures and sources: "
        "devices/<name>.toml, `edgecnn devices --json`). * = this machine.",
    )
    for col, kw in (
        ("device", {"no_wrap": True}),
        ("aliases", {}),
        ("runtime / precisions", {}),
        ("peak TOPS", {"justify": "right"}),
        ("mem BW GB/s", {"justify": "right"}),
        ("memory GB", {"justify": "right"}),
        ("power W", {"justify": "right"}),
        ("latency calibration", {}),
    ):
        table.add_column(col, **kw)
    for p in profiles:
        rt = p.runtime()
        unit = p.unit()
        peaks = ", ".join(
            f"{prec} {unit.peak_tops.get(prec):.3g}"
            for prec in rt.precisions
            if unit.peak_tops.get(prec) is not None
        )
        pts = cited_points(p, p.default_runtime) if p.name != "host" else ()
        if p.name == "host":
            cal = "`devices fit`"
        elif pts:
            cal = f"{len(pts)} published ({pts[0].measured_with.split(' (')[0]})"
        elif rt.transfer_from:
            cal = f"from {rt.transfer_from}"
        else:
            cal = "none (defaults)"
        mark = "*" if p.name == here else ""
        table.add_row(
            p.name + mark,
            ", ".join(p.aliases) or "-",
            f"{p.default_runtime}: {', '.join(rt.precisions)}",
            peaks,
            f"{p.memory.bandwidth_gbps:g}",
            f"{p.memory.size_gb:g}",
            f"{p.power_w:g}",
            cal,
        )
    Console().print(table)


@devices.command()
@click.option(
    "--nets",
    is_flag=True,
    help="Also measure the four networks (OpenVINO FP32, batch 1, 224 px) and fit the predictor to them.",
)
@click.option("--int8", "int8_nets", is_flag=True, help="With --nets: INT8 too (NNCF on random images).")
@click.option("--no-layers", is_flag=True, help="Skip the single-layer OpenVINO timings (most of the ~50 s).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: all cores).")
@click.option(
    "--seconds",
    type=Number(min=0.1),
    default=1.0,
    show_default=True,
    help="Timing per microbenchmark (half of it per single layer).",
)
@click.option(
    "--host",
    default=None,
    metavar="[USER@]HOST",
    help="Fit to that device over SSH instead: single layers timed there by its runtime's "
    "profiler (bench --profile), written as a profile TOML you keep.",
)
@click.option(
    "--base",
    default=None,
    metavar="DEVICE",
    help="--host: the profile giving the device's peaks and bandwidth (rpi4, rpi5, jetson-orin-nano, "
    "a .toml, ...); required with --host.",
)
@click.option("--runtime", default=None, help="--host: the runtime to time (default: the base profile's).")
@click.option(
    "--precision",
    "precisions",
    multiple=True,
    type=click.Choice(["int8", "fp16", "fp32"]),
    help="--host: precisions to time (repeat; default: every one the runtime runs there).",
)
@click.option(
    "--suite",
    type=click.Choice(["quick", "full"]),
    default="quick",
    show_default=True,
    help="--host: 6 layers, or the 17 of the host suite.",
)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="--host: profiled runs per layer (after 3 warm-up).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="--host: the TOML to write [<base>-<host>.toml here].",
)
@remote_python_option
@ssh_config_option
@ssh_timeout_option
@json_option
def fit(
    nets,
    int8_nets,
    no_layers,
    threads,
    seconds,
    host,
    base,
    runtime,
    precisions,
    suite,
    runs,
    out,
    remote_python,
    ssh_config,
    ssh_timeout,
    as_json,
):
    """Fit the latency predictor to this host: measure GEMM per precision, convolution, copy
    bandwidth, and single conv, linear and pool layers in OpenVINO at FP32 and INT8; or, with
    --host, to a device. (Named `devices calibrate` before; that name still works.)

    The record is cached in $EDGECNN_HOME/devices/host-<hash>.json; `bench --predict`
    on the host then uses efficiencies fitted to the single layers (or, with --nets,
    to the measured network latencies). With --host the single layers are
    exported here, timed on the device by its runtime's profiler over SSH, and written
    with the --base profile as a TOML file: `bench ARCH --target FILE.toml` then predicts
    from the device's own layers.

    \b
    Example:
      edgecnn devices fit
      edgecnn devices fit --nets --threads 2
      edgecnn devices fit --host pi@pi5.local --base rpi5 --out my-pi5.toml
    """
    from edgecnn.errors import EdgecnnError

    log = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    if host:
        given = [f for f, v in (("--nets", nets), ("--int8", int8_nets), ("--no-layers", no_layers)) if v]
        if given or not base:
            raise EdgecnnError(
                f"--host fits a device from its own layers: {', '.join(given)} apply to this host only"
                if given
                else "--host needs --base DEVICE (rpi4, rpi5, "
                "jetson-orin-nano, a .toml, ...): the profile with the device's peaks"
            )
        _fit_over_ssh(
            host,
            base=base,
            runtime=runtime,
            precisions=precisions,
            suite=suite,
            runs=runs,
            out=out,
            remote_python=remote_python,
            ssh_config=ssh_config,
            timeout=ssh_timeout,
            threads=threads,
            as_json=as_json,
            log=log,
        )
        return
    from edgecnn.devices.fit import fit_host

    if int8_nets and not nets:
        raise EdgecnnError("--int8 measures the networks in INT8: pass it with --nets")
    rec, path = fit_host(
        nets=nets, int8_nets=int8_nets, layers=not no_layers, threads=threads, seconds=seconds, log=log
    )
    if as_json:
        click.echo(json.dumps({**rec, "path": str(path)}, indent=2))
    else:
        click.echo(f"saved {path}")


def _fit_over_ssh(host, *, as_json, log, suite, **kwargs) -> None:
    from edgecnn.devices.predict import efficiency_for
    from edgecnn.devices.remote_fit import SUITES, fit_over_ssh

    log(f"timing {suite} layer suite on {host}:")
    path, prof = fit_over_ssh(host, suite=SUITES[suite], log=log, **kwargs)
    eff = efficiency_for(prof, kwargs["runtime"])
    if as_json:
        click.echo(
            json.dumps(
                {
                    "path": str(path),
                    "profile": prof.name,
                    "layer_points": len(prof.layer_points),
                    "efficiency": eff.to_dict(),
                },
                indent=2,
            )
        )
        return
    click.echo(
        f"wrote {path} ({len(prof.layer_points)} layers timed on {host}); predict with "
        f"`edgecnn bench ARCH --target {path}`"
    )
    click.echo(
        f"  fit: {eff.basis}; per kernel class {eff.kernel_table()}, {eff.overhead_us:g} us/kernel, "
        f"leave-one-out error {100 * (math.exp(eff.fit_error) - 1):.0f}%"
    )


# The command's name until issue 14 ("calibrate" is PTQ's word): still accepted, not listed.
_calibrate_alias = copy.copy(fit)
_calibrate_alias.hidden = True
devices.add_command(_calibrate_alias, "calibrate")
