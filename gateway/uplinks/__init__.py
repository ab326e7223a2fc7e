"""Uplinks: one per vendor API; the worker in base.py, the vendor request in each module."""
