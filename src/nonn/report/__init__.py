"""The HTML report of a run (`nonn report RUN_DIR`): one self-contained page made from the run's artifacts."""

from .html import render_report, write_report

__all__ = ["render_report", "write_report"]
