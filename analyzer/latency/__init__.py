"""Latency (issue 6): measured in the LiteRT interpreter, and predicted per op from a device profile.

- ``extract``: cut one op out of a model into a single-op ``.tflite``.
- ``timing``: time a model in the interpreter (warm-up, median, spread).
- ``features``: the numbers that describe an op's cost, from the layer graph.
- ``sweep``: synthetic single-op models, the micro-benchmark a profile is trained on.
- ``profile``: the device profile data file (samples, roofline peaks, overheads).
- ``predictor``: per-op-kind regressors (scikit-learn) with a roofline fallback.
- ``measure`` / ``predict``: the passes the report shows.
"""
