"""Runtimes that turn pre-processed images into raw model outputs."""
