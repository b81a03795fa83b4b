"""Experiment configs: one module per experiment, each with a `get_config()`."""
