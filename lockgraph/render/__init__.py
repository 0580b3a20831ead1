"""Renderers: findings and reports are data; these only format them (no I/O here)."""
