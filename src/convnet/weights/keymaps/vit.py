"""Vision Transformer layouts: torchvision's VisionTransformer (torchvision.models.vision_transformer:
``conv_proj``, ``class_token``, ``encoder.pos_embedding``, ``encoder.layers.encoder_layer_N`` with
``ln_1``, ``self_attention`` (nn.MultiheadAttention: ``in_proj_weight`` stacks [q; k; v] as our
``attn.qkv``), ``ln_2``, ``mlp.0``/``mlp.3``, then ``encoder.ln`` and ``heads.head``) and timm's
(timm.models.vision_transformer: ``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.N``
with our block names, ``norm``, ``head``)."""

from . import KeyMap, register_keymap

_LAYER = r"encoder\.layers\.encoder_layer_(\d+)\."

register_keymap(KeyMap(
    source="torchvision.models.vision_transformer",
    families=("vit",),
    rules=(
        (r"conv_proj\.(.*)", r"patch_embed.\1"),
        (r"encoder\.pos_embedding", r"pos_embed.weight"),
        (_LAYER + r"ln_1\.(.*)", r"blocks.\1.norm1.\2"),
        (_LAYER + r"self_attention\.in_proj_(weight|bias)", r"blocks.\1.attn.qkv.\2"),
        (_LAYER + r"self_attention\.out_proj\.(.*)", r"blocks.\1.attn.proj.\2"),
        (_LAYER + r"ln_2\.(.*)", r"blocks.\1.norm2.\2"),
        (_LAYER + r"mlp\.0\.(.*)", r"blocks.\1.mlp.fc1.\2"),
        (_LAYER + r"mlp\.3\.(.*)", r"blocks.\1.mlp.fc2.\2"),
        (r"encoder\.ln\.(.*)", r"norm.\1"),
        (r"heads\.head\.(.*)", r"head.fc.\1"),
    ),
))

register_keymap(KeyMap(
    source="timm.models.vision_transformer",
    families=("vit",),
    rules=(
        (r"patch_embed\.proj\.(.*)", r"patch_embed.\1"),
        (r"cls_token", r"class_token"),
        (r"pos_embed", r"pos_embed.weight"),
        (r"head\.(weight|bias)", r"head.fc.\1"),
    ),
))
