"""Analyses of a finished sweep, each a script: `python -m analysis.<name> OUT [...]`.

    frontier     smallest architecture per error target, Pareto fronts, ratios to the hypernetwork
    scaling      slope of log(min params) against log(1/eps), with a bootstrap interval
    depth        test error against conditioner depth (the paper's rotation figure)
    assumptions  replica disagreement over training (Assumption 1), error against width (Assumption 2)
    report       all of the above the data supports, as OUT/report/report.md

Shared by all of them: `sweep` (reading OUT, command-line plumbing) and `plots` (one colour
and marker per family in every figure). Scripts write tables (Parquet and CSV) and figures
(PNG) under OUT/analysis/. They exit 2 when OUT holds no sweep and 1 when the data cannot
answer their question, saying why in one line either way.
"""
