"""Offline evaluation of the analyses against public data sets (read from a path, never shipped)."""
