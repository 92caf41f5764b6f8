"""Tracing, channel analysis and the op-rule registry."""
