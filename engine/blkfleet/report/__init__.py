"""The HTML report: one self-contained file with inline SVG plots (no network needed to view it)."""
