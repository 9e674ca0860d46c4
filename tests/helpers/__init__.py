"""Helpers shared by the test modules (import as ``helpers.synth``)."""
