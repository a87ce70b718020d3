"""Imports every family module so that their registrations run."""
from . import lenet, resnet, vgg  # noqa: F401
