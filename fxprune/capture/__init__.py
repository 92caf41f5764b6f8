"""Capture: tracing a model into fx graphs, fx-meta helpers, and private copies for running them.

The lowest layer of fxprune: it knows torch.fx and nothing about channels.
"""
