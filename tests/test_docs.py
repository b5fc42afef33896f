"""The documentation site: it builds in strict mode, and the API pages cover every public name."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API_DIR = ROOT / "docs" / "api"
# The packages whose __all__ is the public API; every name must be documented.
PUBLIC_PACKAGES = ("negopt", "negopt.train", "negopt.rewards")

_REFERENCE = re.compile(r"^:::\s*(negopt[\w.]*)\s*$", re.MULTILINE)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)


def _documented_names() -> tuple[set[str], set[str]]:
    """The last component of every ``::: negopt...`` reference, and the text of every heading, in the API pages."""
    references: set[str] = set()
    headings: set[str] = set()
    for page in sorted(API_DIR.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        references |= {path.rsplit(".", 1)[-1] for path in _REFERENCE.findall(text)}
        # Markdown escapes (negopt.\_\_version\_\_) and code spans do not change the name a heading shows.
        headings |= {h.replace("\\", "").replace("`", "") for h in _HEADING.findall(text)}
    return references, headings


def _is_documented(name: str, references: set[str], headings: set[str]) -> bool:
    if name in references:
        return True
    pattern = re.compile(rf"(?<![\w]){re.escape(name)}(?![\w])")
    return any(pattern.search(h) for h in headings)


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_every_public_name_is_in_the_api_pages(package):
    names = importlib.import_module(package).__all__
    assert names, f"{package}.__all__ is empty"
    references, headings = _documented_names()
    missing = [n for n in names if not _is_documented(n, references, headings)]
    assert not missing, (
        f"{package}.__all__ names {missing}, which no page under docs/api/ documents: add a "
        f"'::: {package}.NAME' block (or a heading naming it) to the page where it belongs."
    )


def test_the_coverage_check_can_fail():
    # A name that is not in the API pages must be reported as missing, or the test above proves nothing.
    references, headings = _documented_names()
    assert not _is_documented("NoSuchPublicName", references, headings)
    assert _is_documented("NegOptGenerator", references, headings)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def test_mkdocs_build_strict(tmp_path):
    missing = [m for m in ("mkdocs", "material", "mkdocstrings_handlers.python") if not _installed(m)]
    if missing:
        pytest.skip(f"the docs extra is not installed (no {', '.join(missing)}): pip install 'negopt[docs]'")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert (tmp_path / "site" / "api" / "generator" / "index.html").is_file()


_FROM_IMPORT = re.compile(r"^\s*from\s+(negopt[\w.]*)\s+import\s+\(?([\w\s,]+?)\)?\s*(?:#.*)?$", re.MULTILINE)


def _doc_sources() -> list[Path]:
    return [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md", *sorted((ROOT / "examples").glob("*.py"))]


def _resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted``, then getattr the rest."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_every_name_the_docs_import_or_reference_exists():
    """``from negopt.x import y`` in the docs, README and examples, and every ``::: negopt...`` reference, resolve."""
    names: set[str] = set()
    for path in _doc_sources():
        text = path.read_text(encoding="utf-8")
        for module, imported in _FROM_IMPORT.findall(text):
            names |= {f"{module}.{n.split(' as ')[0].strip()}" for n in imported.split(",") if n.strip()}
        names |= set(_REFERENCE.findall(text))
    # The public paths users and older code import, whatever the docs show today.
    names |= {
        "negopt.NegOptGenerator",
        "negopt.NegOptPipeline",
        "negopt.NegOptPipelineOutput",
        "negopt.BuiltinGenerator",
        "negopt.NegOptConfig",
        "negopt.generator.NegOptGenerator",
        "negopt.pipeline.NegOptPipeline",
        "negopt.pipeline.NegOptPipelineOutput",
        "negopt.pipeline.negative_slots",
        "negopt.train.SFTConfig",
        "negopt.train.SFTTrainer",
        "negopt.train.RLConfig",
        "negopt.train.RLTrainer",
        "negopt.train.rl.RLConfig",
        "negopt.train.rl.RLTrainer",
        "negopt.train.sft.SFTTrainer",
        "negopt.cli.main",
    }
    assert len(names) > 40, sorted(names)  # the scan found the docs' imports
    missing = []
    for name in sorted(names):
        try:
            _resolve(name)
        except (ImportError, AttributeError) as e:
            missing.append(f"{name}: {e}")
    assert not missing, "\n".join(missing)
    assert _resolve("negopt.generator.NegOptGenerator") is _resolve("negopt.NegOptGenerator")
    assert _resolve("negopt.train.rl.RLTrainer") is _resolve("negopt.train.RLTrainer")
