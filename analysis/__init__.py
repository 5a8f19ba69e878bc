"""Analyses of a finished sweep, each a script: `python -m analysis.<name> OUT [...]`.

    frontier     smallest architecture per error target, Pareto fronts, ratios to the hypernetwork
    scaling      slope of log(min params) against log(1/eps) over capacity-limited frontier points
    depth        test error against conditioner depth (the paper's rotation figure)
    assumptions  replica disagreement over training (Assumption 1), error against width (Assumption 2)
    report       all of the above the data supports, as OUT/report/report.md

Shared by all of them: `loading` (reading OUT, command-line plumbing, the one-line answer
to whatever is missing), `evidence` (how resamples become verdicts) and `plots` (one colour
and marker per family in every figure). Scripts write tables (Parquet and CSV) and figures
(PNG) under OUT/analysis/. When something their answer needs is missing (no sweep in OUT,
a corrupt file, a family without an ok trial or meeting no target, no learning curves),
they print what they can, then one line on stderr naming what is missing, and exit 2.
"""
