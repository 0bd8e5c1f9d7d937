"""The shape of the package holds: the import-linter contracts of pyproject.toml (a pure core, the
layers entry points -> adapters -> render -> core, independent sibling adapters, the kubernetes client
in the kube bridge only) and no import cycle anywhere in ``streams``."""

import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = (
    "The core is pure: no I/O library",
    "Generators are pure: streams.render does no I/O",
    "Only the kube bridge imports the kubernetes client",
    "Layers: entry points -> adapters -> render -> core",
    "The kube bridge, the notifier and the HTTP API are independent",
    "The product does not import its demo and test tooling (streams.demo)",
)


def test_every_import_contract_is_kept() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    out = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    for name in CONTRACTS:
        assert f"{name} KEPT" in out.stdout, (name, out.stdout)


def test_no_module_of_the_package_imports_one_that_imports_it_back() -> None:
    """Imports inside functions count too: a lazy import hides a cycle, it does not remove it."""
    graph = grimp.build_graph("streams")
    cycles = sorted({tuple(sorted((m, n))) for m in graph.modules for n in graph.find_modules_directly_imported_by(m)
                     if graph.find_shortest_chain(importer=n, imported=m)})
    assert cycles == [], cycles


def test_every_package_directory_has_an_init_so_the_wheel_and_the_image_carry_it() -> None:
    """setuptools' find_packages (pyproject.toml) leaves out a directory without ``__init__.py``: an
    editable install would still import it, the image would not."""
    missing = sorted(str(d.relative_to(ROOT)) for d in (ROOT / "streams").rglob("*")
                     if d.is_dir() and any(d.glob("*.py")) and not (d / "__init__.py").exists())
    assert missing == [], missing
