"""convnet: convolutional neural networks on PyTorch, in 1, 2 and 3 dimensions."""
from .models import create_model, list_models, model_info
from .weights import from_pretrained, load_pretrained, save_pretrained
from .analysis import summary
from .deploy import optimize
from .ops import evaluate_detections

__version__ = "0.1.0"
__all__ = ["create_model", "evaluate_detections", "from_pretrained", "list_models", "load_pretrained", "model_info",
           "optimize", "save_pretrained", "summary", "__version__"]
