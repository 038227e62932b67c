"""`sqlite_utils`, imported without pandas.

sqlite-utils imports pandas whenever it is installed (Gradio and Ray bring it), only to map
`pandas.Timestamp` to TEXT, which the gallery never stores; importing pandas (with pyarrow) cost
`captioner gallery list` and `captioner find` 0.5 s on an idle 2-core machine and several seconds on a busy
one (benchmarks/bench_startup.py). While sqlite-utils loads, `import pandas` fails as if it were not
installed; afterwards pandas imports normally for whoever needs it. When pandas or sqlite-utils is already
loaded, nothing changes.
"""
from __future__ import annotations

import sys

if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
    import sqlite_utils
else:
    sys.modules["pandas"] = None  # type: ignore[assignment]  # `import pandas` raises ImportError
    try:
        import sqlite_utils
    finally:
        del sys.modules["pandas"]

__all__ = ["sqlite_utils"]
