"""Replay bundles: manifest (JSON Schema), deterministic pack/verify/extract, the engine.pyz builder."""
