"""Checkpoint files: convnet's safetensors + JSON format, and other libraries' state dicts."""
from .checkpoint import (
    CONFIG_NAME,
    CONVERTERS,
    WEIGHTS_NAME,
    from_pretrained,
    load_pretrained,
    load_state,
    load_tensors,
    read_model_config,
    save_pretrained,
    save_tensors,
)
from .checks import check_finite, read_safetensors_header
from .hub import DownloadError
from .pretrained import (
    PretrainedWeights,
    WeightsPreprocess,
    get_weights,
    init_preprocess,
    list_pretrained,
    register_weights,
)
from . import pretrained_table  # noqa: F401,E402  (registers the weights table's rows)
from .keymaps import KEYMAPS, KeyMap, register_keymap
from .io import atomic_write_bytes, atomic_write_json, atomic_write_text, current_umask, new_file_mode, read_json

__all__ = ["CONFIG_NAME", "CONVERTERS", "KEYMAPS", "KeyMap", "register_keymap", "WEIGHTS_NAME", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_text", "from_pretrained", "load_pretrained", "load_state", "load_tensors",
           "read_json", "read_model_config", "save_pretrained", "save_tensors",
           "check_finite", "current_umask", "new_file_mode", "read_safetensors_header",
           "DownloadError", "PretrainedWeights", "WeightsPreprocess", "get_weights", "init_preprocess",
           "list_pretrained", "register_weights"]
