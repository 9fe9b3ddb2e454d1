"""Patching sweeps: every site x position of a model, patched clean into a corrupted run, on the engine.

``circuitcheck sweep FILE --corruption NAME`` compiles the file for its model and data, runs one stacked
denoising variant per cell (:mod:`circuitcheck.sweep.cells`), and writes per-layer heatmaps (HTML), every
cell's estimate and interval (JSON), and a draft hypothesis file of the top cells to test on fresh data
(:mod:`circuitcheck.sweep.draft`). It sits above the report stage (it renders) and below the API and CLI.
"""

from circuitcheck.sweep.cells import OVER, Over, SweepValues, sweep_values
from circuitcheck.sweep.run import DEFAULT_OUT, DEFAULT_TOP_K, SweepReport, sweep_file

__all__ = ["DEFAULT_OUT", "DEFAULT_TOP_K", "OVER", "Over", "SweepReport", "SweepValues", "sweep_file", "sweep_values"]
