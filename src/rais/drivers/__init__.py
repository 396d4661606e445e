"""Drivers at the edges: each has a small interface (base.py) and a fake beside it."""
