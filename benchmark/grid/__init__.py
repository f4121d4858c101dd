"""The evaluation grid: backbone × task × dataset × head × fraction × draw × seed, resumable.

Along the data flow, one module each:

- :mod:`~benchmark.grid.request`: what to evaluate (:class:`GridRequest`, :class:`BackboneChoice`),
  the :class:`Cell` a plan resolves to, the :class:`GridSummary` a run reports;
- :mod:`~benchmark.grid.planning`: every cell of a request resolved to its full identity, checked
  against the task, the board and the prepared data, and each cell's estimated cost (shards);
- :mod:`~benchmark.grid.dry_run`: ``run --dry-run``, what a grid will cost before anything runs;
- :mod:`~benchmark.grid.cell`: one cell evaluated (the task's adapter, its scorer, the record);
- :mod:`~benchmark.grid.isolation`: a cell in a fresh child process that dies with its runner;
- :mod:`~benchmark.grid.loop`: the grid loop with its per-cell locks (:func:`run_grid`).

Lower modules never import higher ones (``tests/test_layering.py``).
"""

from benchmark.grid.loop import run_grid
from benchmark.grid.planning import PlannedCell, datasets_to_evaluate, plan_grid, task_names
from benchmark.grid.request import BackboneChoice, Cell, GridError, GridRequest, GridSummary, resolve_device

__all__ = [
    "BackboneChoice", "Cell", "GridError", "GridRequest", "GridSummary", "PlannedCell", "datasets_to_evaluate",
    "plan_grid", "resolve_device", "run_grid", "task_names",
]
