"""Analysis: per-layer summaries (shapes, parameters, MACs)."""
from .summary import LayerRow, ModelSummary, summary

__all__ = ["LayerRow", "ModelSummary", "summary"]
