"""Layers that run one way: the search and the analysis read configs and count parameters without
torch, and the configuration layer imports nothing above it."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_search_and_the_analysis_import_without_torch():
    code = ("import sys, hypersweep.search, analysis.frontier, analysis.plots, analysis.results_page; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m == 'ray'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"  # neither torch nor Ray is loaded


def hypersweep_imports(path: Path) -> set[str]:
    """The hypersweep modules `path` imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hypersweep"):
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names if node.module == "hypersweep")
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("hypersweep"))
    return names


def test_config_and_vocab_sit_below_everything_else():
    assert hypersweep_imports(ROOT / "hypersweep" / "vocab.py") == set()
    assert hypersweep_imports(ROOT / "hypersweep" / "config.py") == {"hypersweep.vocab"}  # not tasks: no cycle
    assert "hypersweep.launch" not in hypersweep_imports(ROOT / "analysis" / "results_page.py")
