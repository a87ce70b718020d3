"""Data sets (bundled digits, image folders, MNIST idx, CIFAR binary) and preprocessing."""
from .datasets import DATASETS, DataSplits, load_data, load_digits, stratified_split
from .readers import (
    CIFAR10_CLASSES,
    DataFormatError,
    ImageFolder,
    load_cifar,
    load_image,
    load_mnist,
    read_idx,
)
from .augment import BatchAugment
from .transforms import Preprocess, random_affine

__all__ = ["BatchAugment", "CIFAR10_CLASSES", "DATASETS", "DataFormatError", "DataSplits", "ImageFolder", "Preprocess",
           "load_cifar", "load_data", "load_digits", "load_image", "load_mnist", "random_affine",
           "read_idx", "stratified_split"]
