"""Analysis: per-layer summaries (shapes, parameters, MACs and FLOPs, receptive fields), the
article's size formulas, an input-size solver, effective receptive fields, equivariance and
class activation maps."""
from .cam import CAMResult, grad_cam
from .equivariance import EquivarianceReport, equivariance
from .erf import ERFResult, effective_receptive_field
from .formulas import (
    InputSizeInfo,
    conv_output_size,
    conv_params,
    dilated_kernel_size,
    input_size_info,
    separable_conv_cost,
    stacked_receptive_field,
)
from .receptive_field import RF, UnknownGeometry, receptive_field, receptive_fields
from .rf_measurement import measure_receptive_field
from .summary import LayerRow, ModelSummary, summary

__all__ = ["RF", "CAMResult", "ERFResult", "EquivarianceReport", "InputSizeInfo", "LayerRow", "ModelSummary",
           "UnknownGeometry", "conv_output_size", "conv_params", "dilated_kernel_size", "effective_receptive_field",
           "equivariance", "grad_cam", "input_size_info", "measure_receptive_field", "receptive_field",
           "receptive_fields", "separable_conv_cost", "stacked_receptive_field", "summary"]
