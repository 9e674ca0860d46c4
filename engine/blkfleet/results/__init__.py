"""Replay results: the results JSON document (``document``) and, on the controller, the results store."""
