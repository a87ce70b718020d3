"""Imports every family module so that their registrations run."""
from . import lenet, resnet  # noqa: F401
