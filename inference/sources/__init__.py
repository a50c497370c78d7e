"""Converters of published studies' source files into the project's tidy observations.

One module per study, named after the folder under ``data/`` it fills; each reads the source file
unchanged, documents every change it makes to the values, and is rerun with ``python -m``.
"""
