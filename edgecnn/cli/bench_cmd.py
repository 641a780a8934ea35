"""``edgecnn bench``."""

from __future__ import annotations

import json
import os

import click

from edgecnn.cli.options import SECONDS, json_option, ssh_timeout_option


@click.command()
@click.argument("what", metavar="ARTIFACT|ARCH")
@click.option(
    "--target",
    default=None,
    metavar="DEVICE",
    help="ARCH only: device profile or alias (cpu, jetson, rpi, rpi4, jetson-nano, ...); default cpu.",
)
@click.option("--runtime", default=None, help="Runtime (default: the artifact's, or the device's default).")
@click.option(
    "--precision",
    type=click.Choice(["int8", "fp16", "bf16", "fp32"]),
    default=None,
    help="ARCH only: precision (default: fp32 when measured here, else the device's default).",
)
@click.option(
    "--image-size", type=click.IntRange(min=8), default=None, help="ARCH only: square input side [224]."
)
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Batch size [1, or the artifact's].")
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: the runtime's)."
)
@click.option(
    "--predict", is_flag=True, help="ARCH only: predict from the device profile even where it could measure."
)
@click.option(
    "--profile",
    is_flag=True,
    help="ARTIFACT only: per-layer times from the runtime's own profiler (OpenVINO PERF_COUNT, ONNX "
    "Runtime profiling, LiteRT benchmark_model, trtexec --exportProfile), --min-runs runs.",
)
@click.option(
    "--min-seconds",
    type=SECONDS,
    default=2.0,
    show_default=True,
    help="Time at least this long (and at least --min-runs runs).",
)
@click.option("--min-runs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="[USER@]HOST",
    help="Bench ARTIFACT on this device over SSH (repeat for several, run in parallel).",
)
@click.option(
    "--remote-python",
    envvar="EDGECNN_REMOTE_PYTHON",
    default="python3",
    show_default=True,
    metavar="PATH",
    help="--host: the device's Python with edgecnn (env EDGECNN_REMOTE_PYTHON).",
)
@click.option(
    "--ssh-config",
    envvar="EDGECNN_SSH_CONFIG",
    default=None,
    metavar="FILE",
    help="--host: ssh config file, ssh -F (env EDGECNN_SSH_CONFIG; default ~/.ssh/config).",
)
@ssh_timeout_option
@json_option
def bench(
    what,
    target,
    runtime,
    precision,
    image_size,
    batch,
    threads,
    predict,
    profile,
    min_seconds,
    min_runs,
    warmup,
    hosts,
    remote_python,
    ssh_config,
    ssh_timeout,
    as_json,
):
    """Latency of an exported ARTIFACT on this machine, or of ARCH on a --target device.

    An artifact (directory or file with metadata.json; its sha256 is checked) is
    measured here. ARCH on this machine is measured through OpenVINO (random weights,
    FP32 unless --precision int8); ARCH on a device that is not this machine is
    predicted from its profile, labelled "predicted" with an error band.

    With --host, the artifact is copied to each device over SSH (the system ssh:
    ~/.ssh/config, agent and known_hosts apply; never a prompt) and measured there by
    the device's own edgecnn (pip install --no-deps edgecnn numpy click + its runtime).
    Every host gets its result or a one-line error; the exit status is 2 if any failed.

    \b
    Example:
      edgecnn bench runs/export/resnet18-cpu-int8 --threads 2
      edgecnn bench runs/export/resnet18-rpi-int8 --host pi@pi4.local --host pi@pi5.local
      edgecnn bench resnet18 --target cpu
      edgecnn bench resnet18 --target jetson --precision int8 --json
      edgecnn bench runs/export/resnet18-cpu-int8 --profile      # per-layer table
    """
    from edgecnn.bench import bench_arch, bench_artifact

    timing = {"min_seconds": min_seconds, "min_runs": min_runs, "warmup": warmup}
    run = {"runtime": runtime, "threads": threads}
    if not os.path.exists(what):
        _refuse_artifact_options(what, hosts=hosts, profile=profile)
        size = {"image_size": image_size or 224, "batch": batch or 1}
        result = bench_arch(
            what, target=target or "cpu", precision=precision, predict=predict, **run, **size, **timing
        )
        _emit(result, as_json)
        return
    _refuse_arch_options(target=target, precision=precision, image_size=image_size, predict=predict)
    remote = {
        "remote_python": remote_python,
        "ssh_config": ssh_config,
        "timeout": ssh_timeout,
        "as_json": as_json,
    }
    if profile:
        _profile(what, hosts, runs=min_runs, warmup=warmup, **run, **remote)
    elif hosts:
        _bench_hosts(what, hosts, batch=batch, **run, **remote, **timing)
    else:
        _emit(bench_artifact(what, batch=batch, **run, **timing), as_json)


def _emit(result: dict, as_json: bool) -> None:
    """The result as JSON (``--json``) or as the summary lines."""
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        _print(result)


def _refuse_arch_options(**given) -> None:
    """An artifact has its own target, precision and size: refuse ARCH's options with it."""
    from edgecnn.errors import EdgecnnError

    named = [f"--{k.replace('_', '-')}" for k, v in given.items() if v]
    if named:
        raise EdgecnnError(
            f"{', '.join(named)} apply to ARCH, not to an artifact (it has its own): "
            f"leave them out or pass an architecture name"
        )


def _refuse_artifact_options(what: str, *, hosts, profile) -> None:
    """--host and --profile need an artifact; ``what`` must then name an architecture."""
    from edgecnn.errors import EdgecnnError, suggest

    if hosts:
        raise EdgecnnError(
            f"--host benches an exported artifact, and '{what}' is no file or directory: "
            f"export it first (edgecnn export ARCH --target DEVICE) and pass its directory"
        )
    if profile:
        raise EdgecnnError(
            f"--profile times the layers of an exported artifact, and '{what}' is none: "
            f"export it first (edgecnn export ARCH --target DEVICE) and pass its directory"
        )
    # edgecnn.models imports torch: keep it off the artifact path, which runs on devices.
    from edgecnn.models import list_archs

    if what not in list_archs(include_test=True):
        raise EdgecnnError(
            f"'{what}' is neither an artifact path nor an architecture."
            f"{suggest(what, list_archs())} Architectures: {', '.join(list_archs())}"
        )


def _bench_hosts(what, hosts, *, as_json: bool, **kwargs) -> None:
    """Every host's result (or its one-line error on stderr); exit 2 after printing all if any failed."""
    import sys

    from edgecnn.remote import bench_hosts

    results = bench_hosts(what, hosts, **kwargs)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2, default=str))
    for r in results:
        if r.ok:
            if not as_json:
                click.echo(f"{r.host}:")
                _print(r.result)
        else:
            click.echo(f"error: {r.error}", err=True)
    if not all(r.ok for r in results):
        sys.exit(2)


def _profile(
    what, hosts, *, as_json, runtime, threads, runs, warmup, remote_python, ssh_config, timeout
) -> None:
    """Per-layer profile here, or on each --host (each host's result or one-line error; exit 2 if any
    failed)."""
    import sys

    from edgecnn.profiling import LayerProfile, profile_artifact

    if not hosts:
        prof = profile_artifact(what, runtime=runtime, threads=threads, runs=runs, warmup=warmup)
        click.echo(json.dumps(prof.to_json(), indent=2) if as_json else format_profile(prof))
        return
    from edgecnn.remote import profile_hosts

    results = profile_hosts(
        what,
        hosts,
        remote_python=remote_python,
        ssh_config=ssh_config,
        runtime=runtime,
        threads=threads,
        runs=runs,
        warmup=warmup,
        timeout=timeout,
    )
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2, default=str))
    for r in results:
        if not r.ok:
            click.echo(f"error: {r.error}", err=True)
        elif not as_json:
            click.echo(f"{r.host}:\n{format_profile(LayerProfile.from_json(r.result))}")
    if not all(r.ok for r in results):
        sys.exit(2)


def format_profile(prof) -> str:
    """A per-layer table of a :class:`edgecnn.profiling.LayerProfile`, slowest share last column."""
    total = prof.total_ms or 1.0
    width = max(12, *(len(x.name) for x in prof.layers[:200]))
    lines = [
        f"{prof.arch} ({prof.runtime} {prof.version}, {prof.precision}): {prof.profiler}, {prof.statistic}"
        + (f", {prof.threads} threads" if prof.threads else ""),
        f"  {'#':>3}  {'layer':<{width}}  {'op':<16} {'kernel':<28} {'ms':>9} {'%':>6}",
    ]
    for i, x in enumerate(prof.layers, 1):
        lines.append(
            f"  {i:>3}  {x.name:<{width}}  {x.op_type[:16]:<16} {x.kernel[:28]:<28} {x.ms:>9.4f} "
            f"{100 * x.ms / total:>5.1f}%"
        )
    wall = f"; one inference took {prof.wall_ms:.3f} ms (median, profiler on)" if prof.wall_ms else ""
    lines.append(f"  {len(prof.layers)} layers, {prof.total_ms:.3f} ms in all{wall}")
    return "\n".join(lines)


def _print(r: dict) -> None:
    lat = r["latency_ms"]
    what = (
        f"{r.get('arch')} on {r.get('device')} ({r.get('runtime')}, {r.get('precision')}, "
        f"batch {r.get('batch')}"
    )
    what += f", {r['image_size']} px)" if r.get("image_size") else ")"
    if r["latency_source"] == "predicted":
        click.echo(
            f"{what}: PREDICTED {lat['p50']:.2f} ms (band {lat['min']:.2f}-{lat['max']:.2f} ms, "
            f"+-{r['error_pct']:.0f}%), not measured"
        )
        click.echo(f"  basis: {r['prediction']['basis']}")
        for note in r["prediction"].get("notes", []):
            click.echo(f"  note: {note}")
    elif r["latency_source"] == "emulated":
        emu = (r.get("env") or {}).get("emulated") or {}
        click.echo(
            f"{what}: EMULATED ({emu.get('emulated', '?')}, CPU model {emu.get('cpu', '?')}), p50 "
            f"{lat['p50']:.2f} ms under emulation: it ran on ARM's kernels, and this time is no "
            f"device's latency"
        )
    else:
        click.echo(
            f"{what}: measured p50 {lat['p50']:.2f} ms, p90 {lat['p90']:.2f}, p99 {lat['p99']:.2f}, "
            f"mean {lat['mean']:.2f} +- {lat['std']:.2f}, min {lat['min']:.2f} (n={lat['n']})"
        )
        click.echo(
            f"  throughput {r['throughput_ips']:.1f} img/s, first inference {r['first_inference_ms']:.1f} ms"
            + (f", load {r['load_ms']:.0f} ms" if r.get("load_ms") is not None else "")
            + f", peak memory {r['peak_memory_mb']:.0f} MB"
        )
        if r.get("latency_clock") == "runtime":
            click.echo(
                f"  the runtime's own time per call; the Python call adds {r['python_overhead_ms']:.3f} ms "
                f"(wall p50 {r['wall_latency_ms']['p50']:.2f} ms)"
            )
        env = r.get("env") or {}
        if env.get("loadavg"):
            click.echo(
                f"  load average {env['loadavg'][0]:.2f} on {env.get('cpu_count')} CPUs "
                f"({env.get('cpu_model')})"
            )
    if r.get("energy_mj") is not None:
        click.echo(f"  energy {r['energy_mj']:.2f} mJ/image ({r['energy_source']})")
    for note in r.get("notes", []):
        click.echo(f"  note: {note}")
