"""The benchmark suite of nexus-reactive (``make bench``, ``python -m bench.run``).

It measures the library's public paths and naive baselines on the same machine,
with the same traffic, in one invocation, variants interleaved round by round.
See bench/README.md for what each section measures and how to read the output.
"""
