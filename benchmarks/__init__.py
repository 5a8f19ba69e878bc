"""Side-by-side benchmarks: every figure is a ratio of two things measured in one run.

    python -m benchmarks.run [--quick] [--only NAME] [--json PATH]

One module per benchmark, each with `run(size) -> Result` for size `tiny` (the smoke
tests), `quick` or `full`; `benchmarks.measure` holds the timing they share.
"""
