"""``edgecnn cache`` and ``edgecnn cache prune``."""

from __future__ import annotations

import json

import click

from edgecnn.cli.options import json_option


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _rel(path, home) -> str:
    try:
        return str(path.relative_to(home))
    except ValueError:
        return str(path)


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def cache(ctx, as_json):
    """List what $EDGECNN_HOME holds: each stage result, its size, what made it, its status.

    A status of "unreferenced" or "incomplete", and the stale temporaries killed runs
    left, are what `edgecnn cache prune` removes.

    \b
    Example:
      edgecnn cache
      edgecnn cache --json
      edgecnn cache prune --dry-run
    """
    if ctx.invoked_subcommand is not None:
        return
    from edgecnn.cache import scan

    listing = scan()
    if as_json:
        click.echo(json.dumps(listing.to_json(), indent=2))
        return
    home = listing.home
    click.echo(
        f"{home}: {_size(listing.total_bytes)} in {len(listing.entries)} entries, "
        f"{len(listing.temporaries)} temporaries"
    )
    for e in listing.entries:
        click.echo(
            f"  {e.kind:<10} {_size(e.size_bytes):>9}  {e.status:<12} {_rel(e.path, home)}  <- {e.made_by}"
        )
    for t in listing.temporaries:
        click.echo(f"  {'temporary':<10} {_size(t.size_bytes):>9}  {t.status:<12} {_rel(t.path, home)}")
    todo = listing.prunable()
    if todo:
        freed = _size(sum(x.size_bytes for x in todo))
        click.echo(f"`edgecnn cache prune` removes {len(todo)} of them ({freed})")


@cache.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@json_option
def prune(dry_run, as_json):
    """Remove stale temporaries and the cache entries nothing refers to any more.

    Training runs, deploy bundles, frontier results, weights, datasets and engines stay,
    with everything they refer to; so do the results of `edgecnn export`, `calibrate` and
    `qat` run on their own. An entry a running edgecnn holds is never touched.

    \b
    Example:
      edgecnn cache prune --dry-run
      edgecnn cache prune
    """
    from edgecnn.cache import prune as run

    result = run(dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    for r in result.removed:
        click.echo(f"{verb} {_rel(r.path, result.home)} ({_size(r.size_bytes)})")
    click.echo(f"{verb} {len(result.removed)} items, {_size(result.freed_bytes)}")
