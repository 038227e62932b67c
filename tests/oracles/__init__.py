"""Test oracles: independent implementations and input generators that the tests (and the
benchmarks) check the engine against.

* `reference_loop`: the classic tutorial-style captioning loop (plain Python and plain PyTorch,
  nothing from `captioner.decoding`), an oracle for the engine's decoding;
* `photos`: photo-like JPEGs and other test images, made on the fly.

Tests import these as ``from oracles.reference_loop import ...`` (pytest puts tests/ on sys.path); the
benchmarks, run from the checkout as ``python -m benchmarks.bench_NAME``, as ``from tests.oracles.photos import
...``. Nothing here imports from benchmarks/.
"""
