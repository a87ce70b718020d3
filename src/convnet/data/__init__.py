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
from .audio import LogMelSpectrogram, Waveform, mu_law_decode, mu_law_encode, read_wav, resample
from .text import Vocabulary, embedding_matrix, encode, load_rotten_tomatoes, read_word_vectors, tokenize
from .timeseries import TimeSeriesData, load_aeon, read_ts, znormalize
from .video import load_clip, read_frames, video_info
from .inputs import read_input, register_input_reader

__all__ = ["AugmentConfig", "BatchAugment", "BatchStream", "CIFAR10_CLASSES", "DataFormatError", "DataOptions",
           "DataSplits", "ImageFileSamples", "ImageFolder", "Preprocess", "Samples", "TensorSamples", "as_samples",
           "data_source", "dataset_names", "load_cifar", "load_data", "load_digits", "load_image", "load_mnist",
           "random_affine", "read_idx", "register_dataset", "stratified_split",
           "LogMelSpectrogram", "TimeSeriesData", "Vocabulary", "Waveform", "embedding_matrix", "encode",
           "load_aeon", "load_clip", "load_rotten_tomatoes", "mu_law_decode", "mu_law_encode", "read_frames", "read_ts",
           "read_wav", "read_word_vectors", "resample", "tokenize", "video_info", "znormalize",
           "read_input", "register_input_reader"]
