"""Model families and the registry."""
from . import _families  # noqa: F401  (registers every family)
from ._base import ClassifierHead, ConvNetClassifier, FeatureInfo, LayerwiseLearner
from ._dilate import dilate
from ._features import FeatureExtractor
from ._inflate import inflate
from ._segmentation import SegmentationModel
from .efficientnet import compound_scale
from ._registry import (
    ModelEntry,
    count_parameters,
    create_model,
    get_entry,
    list_models,
    model_info,
    register,
)

__all__ = ["ClassifierHead", "ConvNetClassifier", "FeatureExtractor", "FeatureInfo", "LayerwiseLearner", "ModelEntry",
           "SegmentationModel", "count_parameters", "compound_scale", "create_model", "dilate", "get_entry", "inflate",
           "list_models", "model_info", "register"]
