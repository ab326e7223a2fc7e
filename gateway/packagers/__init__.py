"""Packagers: one per vendor shape."""
