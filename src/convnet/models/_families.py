"""Imports every family module so that their registrations run.

A family is any module of this package whose name does not start with an underscore; adding a
file is all it takes to register its variants.
"""
import importlib
import pkgutil

for _info in pkgutil.iter_modules(importlib.import_module(__package__).__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__package__}.{_info.name}")
