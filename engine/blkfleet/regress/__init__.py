"""Regression verdicts: stored runs compared with a named baseline, per host and device, with a statistical test."""
