"""The engines of the host-metric windows the benchmarks compare, how to start each, its code.

Spark (the kit's job), the baseline (``bench/baseline.py``, a plain consumer) and the
peers (``bench/peers/``: Quix Streams and Pathway, issue #27, each in ``.venv-peers``).
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Sequence
from pathlib import Path

from bench._processes import PY, ROOT

BASELINE_SCRIPT = ROOT / "bench" / "baseline.py"
#: The peers (issue #27): each a job of its own in ``.venv-peers`` (``make bench`` makes it).
PEERS_PY = ROOT / ".venv-peers" / "bin" / "python"
PEER_SCRIPTS = {"quix": ROOT / "bench" / "peers" / "quix_windows.py",
                "pathway": ROOT / "bench" / "peers" / "pathway_windows.py"}
#: Every engine of the host-metric windows, and the files of its job's own code.
ENGINE_CODE = {"spark": [ROOT / "processing" / "vmstat_windows.py"],
               "baseline": [BASELINE_SCRIPT],
               **{name: [path, ROOT / "bench" / "peers" / "_writer.py"]
                  for name, path in PEER_SCRIPTS.items()}}
#: The kinds of process (``bench/_usage.py``'s ``_kind``) that are each engine itself.
ENGINE_KINDS = {"spark": ("JVM", "Spark Python workers", "Spark driver (Python)"),
                "baseline": ("baseline consumer",),
                **{name: (f"peer job ({name})",) for name in PEER_SCRIPTS}}


def engine_argv(engine: str) -> list[str]:
    """How to start a plain (not Spark) engine's job: the baseline, or a peer's."""
    if engine == "baseline":
        return [PY, str(BASELINE_SCRIPT)]
    if not PEERS_PY.exists():
        raise RuntimeError(f"no {PEERS_PY}: `make bench` installs the peers "
                           "(bench/peers/requirements.lock)")
    return [str(PEERS_PY), str(PEER_SCRIPTS[engine])]


def code_lines(paths: Sequence[Path]) -> int:
    """Lines of code in ``paths``: not blank, not only a comment, not a docstring."""
    total = 0
    for path in paths:
        text = path.read_text()
        docstrings: set[int] = set()
        for node in ast.walk(ast.parse(text)):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                docstrings.update(range(body[0].lineno, (body[0].end_lineno or 0) + 1))
        code: set[int] = set()
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE,
                                tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
                code.update(range(tok.start[0], tok.end[0] + 1))
        total += len(code - docstrings)
    return total
