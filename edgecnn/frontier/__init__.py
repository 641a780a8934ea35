"""The accuracy / cost frontier of the networks per target, and the chooser over it.

One module per job:

- :mod:`.points`: the costs (:data:`COSTS`), the point of a deploy report, reading frontier.json
  back; the types themselves (:class:`~edgecnn.results.FrontierPoint`,
  :class:`~edgecnn.results.Frontier`) live in :mod:`edgecnn.results` with the other results;
- :mod:`.pareto`: Pareto sets (pure);
- :mod:`.run`: :func:`run_frontier` (deploy every combination, write the files after each);
- :mod:`.render` (frontier.csv, report.md, report.html) and :mod:`.plot` (frontier.png);
- :mod:`.choose`: :func:`choose` and :func:`load_points`;
- :mod:`.parse`: ``--targets``, ``--host`` and limits with units.

Importing this package imports no torch and no backend.
"""

from edgecnn.frontier.choose import LATENCY_STATS, Choice, choose, load_points
from edgecnn.frontier.pareto import flag_pareto, frontier, pareto
from edgecnn.frontier.parse import parse_accuracy, parse_hosts, parse_latency, parse_list, parse_targets
from edgecnn.frontier.plot import check_plot, render_png
from edgecnn.frontier.points import (
    COSTS,
    EMULATED_WHY,
    POINT_TYPES,
    SCHEMA,
    check_cost,
    check_result,
    cost_fields,
    point_from_report,
    read_frontier,
)
from edgecnn.frontier.render import accuracy_cell, render_csv, render_html, render_markdown
from edgecnn.frontier.run import FILES, FrontierOptions, remember, run_frontier, work_order, write_frontier
from edgecnn.results import Frontier, FrontierPoint

__all__ = [
    "COSTS",
    "EMULATED_WHY",
    "FILES",
    "LATENCY_STATS",
    "POINT_TYPES",
    "SCHEMA",
    "Choice",
    "Frontier",
    "FrontierOptions",
    "FrontierPoint",
    "accuracy_cell",
    "check_cost",
    "check_plot",
    "check_result",
    "choose",
    "cost_fields",
    "flag_pareto",
    "frontier",
    "load_points",
    "pareto",
    "parse_accuracy",
    "parse_hosts",
    "parse_latency",
    "parse_list",
    "parse_targets",
    "point_from_report",
    "read_frontier",
    "remember",
    "render_csv",
    "render_html",
    "render_markdown",
    "render_png",
    "run_frontier",
    "work_order",
    "write_frontier",
]
