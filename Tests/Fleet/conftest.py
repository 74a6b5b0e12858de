"""Puts Tests/pyhelpers (the helpers the pytest suites share) on the import path."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "pyhelpers"))
