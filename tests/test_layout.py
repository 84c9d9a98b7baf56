"""The package layout must never shadow pymilter's C module ``milter``."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_import_milter_from_repo_root() -> None:
    # `python -m pytest` and `python -m ...` put the repo root (which has a milter/ folder) first
    # on sys.path: pymilter must still find its own C module.
    code = ("import sys; sys.path.insert(0, '.'); import Milter, milter; "
            "assert milter.__file__.endswith('.so'), milter.__file__; "
            "print(Milter.milter.__name__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "milter"


def test_no_init_in_milter_folder() -> None:
    assert not (REPO / "milter" / "__init__.py").exists()


def test_package_imports_as_mailwarden() -> None:
    import mailwarden.detectors.base
    import mailwarden.mta.adapter

    assert mailwarden.mta.adapter.__file__.startswith(str(REPO / "milter"))
    assert mailwarden.detectors.base.__file__.startswith(str(REPO / "detectors"))
