"""Data: samples and splits (in memory or streamed from disk), data sets by name, readers per
format, preprocessing, and batched augmentation with its config."""
from .datasets import (DataOptions, DataSplits, data_source, dataset_names, load_data, load_digits, register_dataset,
                       stratified_split)
from .readers import (
    CIFAR10_CLASSES,
    DataFormatError,
    ImageFolder,
    load_cifar,
    load_image,
    load_mnist,
    read_idx,
)
from .augment import AugmentConfig, BatchAugment
from .loader import BatchStream
from .samples import ImageFileSamples, Samples, TensorSamples, as_samples
from .transforms import Preprocess, random_affine

__all__ = ["AugmentConfig", "BatchAugment", "BatchStream", "CIFAR10_CLASSES", "DataFormatError", "DataOptions",
           "DataSplits", "ImageFileSamples", "ImageFolder", "Preprocess", "Samples", "TensorSamples", "as_samples",
           "data_source", "dataset_names", "load_cifar", "load_data", "load_digits", "load_image", "load_mnist",
           "random_affine", "read_idx", "register_dataset", "stratified_split"]
