#!/usr/bin/env python3
"""Export MobileSAM to the two ONNX files lookout runs.

* image encoder: `image` 1x3x1024x1024 (normalised with SAM's pixel mean/std, padded
  bottom/right to 1024x1024) -> `image_embeddings` 1xCx64x64 (C = 256 for MobileSAM).
* prompt + mask decoder: SAM's `SamOnnxModel` signature WITHOUT `orig_im_size` and without
  `mask_postprocessing` (tract cannot run its run-time-sized Resize; lookout upscales and
  crops the low-res logits itself, only where a mask is needed):
    inputs  image_embeddings 1xCx64x64, point_coords 1xNx2 (1024-frame pixels),
            point_labels 1xN (1 fg, 0 bg, 2/3 box corners, -1 padding point),
            mask_input 1x1x256x256, has_mask_input 1
    outputs low_res_masks 1x4x256x256 (index 0: single-mask output, 1..3: multimask),
            iou_predictions 1x4

The model code is the PyPI package `mobilesam-mirror` (`mobile_sam.build_sam_vit_t`).

Weights, said plainly:
* `--checkpoint mobile_sam.pt` loads the official MobileSAM weights (not downloadable on
  lookout's build machines; bring your own copy). These give real segmentations.
* `--random-weights --seed N` keeps PyTorch's initialisation, seeded: the exact
  architecture and operator graph with meaningless weights. lookout's tests and benchmarks
  use these; their masks are not segmentations of anything.
* `--tiny` (with `--random-weights`) shrinks every width and depth of the same architecture
  (TinyViT stages, neck, two-way transformer) so that committed parity fixtures stay small.

Also writes `--reference DIR`: onnxruntime outputs on deterministic inputs, for lookout's
tract-vs-onnxruntime parity tests (see `tests/sam.rs`).
"""

import argparse
import os
import sys
import types


def install_timm_shim():
    """TinyViT imports three helpers from timm. timm pulls torchvision and more, and none of it
    matters for inference with drop-path 0, so the three are provided here with the same
    behaviour (DropPath is the identity in eval mode)."""
    try:
        import timm  # noqa: F401
        return
    except ImportError:
        pass
    import torch

    class DropPath(torch.nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):
            return x

    def to_2tuple(x):
        return tuple(x) if isinstance(x, (tuple, list)) else (x, x)

    def register_model(fn):
        return fn

    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    registry = types.ModuleType("timm.models.registry")
    layers.DropPath = DropPath
    layers.to_2tuple = to_2tuple
    layers.trunc_normal_ = torch.nn.init.trunc_normal_
    registry.register_model = register_model
    timm.models = models
    models.layers = layers
    models.registry = registry
    sys.modules.update(
        {"timm": timm, "timm.models": models, "timm.models.layers": layers, "timm.models.registry": registry}
    )


def build_tiny(torch):
    """The MobileSAM architecture with every width and depth reduced (for small fixtures)."""
    from mobile_sam.modeling import MaskDecoder, PromptEncoder, Sam, TinyViT, TwoWayTransformer
    from mobile_sam.modeling.common import LayerNorm2d

    dim = 32
    encoder = TinyViT(
        img_size=1024, in_chans=3, num_classes=10,
        embed_dims=[8, 16, 16, 16], depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 2],
        window_sizes=[7, 7, 14, 7], mlp_ratio=2.0, drop_rate=0.0, drop_path_rate=0.0,
        use_checkpoint=False, mbconv_expand_ratio=2.0, local_conv_size=3, layer_lr_decay=0.8,
    )
    # MobileSAM keeps 64x64 in the last stage by giving the last PatchMerging stride 1, a rule
    # keyed to its widths (320/448/576); the reduced widths get the same stride explicitly.
    encoder.layers[2].downsample.conv2.c.stride = (1, 1)
    nn = torch.nn
    encoder.neck = nn.Sequential(
        nn.Conv2d(16, dim, kernel_size=1, bias=False), LayerNorm2d(dim),
        nn.Conv2d(dim, dim, kernel_size=3, padding=1, bias=False), LayerNorm2d(dim),
    )
    sam = Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=dim, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=64, num_heads=2),
            transformer_dim=dim, iou_head_depth=3, iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def randomise_norms(torch, sam, seed):
    """PyTorch initialises norm layers to identity and BatchNorm statistics to 0/1; with
    seeded random values there the graph exercises every parameter, as trained weights do."""
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in sam.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            for name in ("weight", "bias"):
                p = getattr(m, name, None)
                if isinstance(m, (torch.nn.LayerNorm, torch.nn.BatchNorm2d)) and p is not None:
                    p.copy_(p + torch.randn(p.shape, generator=gen) * 0.1)
            if type(m).__name__ == "LayerNorm2d":
                m.weight.copy_(m.weight + torch.randn(m.weight.shape, generator=gen) * 0.1)
                m.bias.copy_(m.bias + torch.randn(m.bias.shape, generator=gen) * 0.1)


class LowResDecoder:
    """SamOnnxModel.forward up to (not including) mask selection and postprocessing."""

    @staticmethod
    def build(torch, sam):
        from mobile_sam.utils.onnx import SamOnnxModel

        class Module(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = SamOnnxModel(sam, return_single_mask=False)

            @torch.no_grad()
            def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
                inner = self.inner
                sparse = inner._embed_points(point_coords, point_labels)
                dense = inner._embed_masks(mask_input, has_mask_input)
                masks, scores = inner.model.mask_decoder.predict_masks(
                    image_embeddings=image_embeddings,
                    image_pe=inner.model.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                )
                return masks, scores

        return Module().eval()


def export(torch, sam, out_dir, name, opset):
    os.makedirs(out_dir, exist_ok=True)
    enc_path = os.path.join(out_dir, f"{name}_encoder.onnx")
    dec_path = os.path.join(out_dir, f"{name}_decoder.onnx")
    image = torch.randn(1, 3, 1024, 1024)
    torch.onnx.export(
        sam.image_encoder, (image,), enc_path, input_names=["image"],
        output_names=["image_embeddings"], opset_version=opset, dynamo=False,
    )
    dec = LowResDecoder.build(torch, sam)
    c = sam.prompt_encoder.embed_dim
    args = (
        torch.randn(1, c, 64, 64),
        torch.randint(0, 1024, (1, 5, 2), dtype=torch.float32),
        torch.randint(-1, 4, (1, 5), dtype=torch.float32),
        torch.randn(1, 1, 256, 256),
        torch.tensor([1], dtype=torch.float32),
    )
    torch.onnx.export(
        dec, args, dec_path,
        input_names=["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"],
        output_names=["low_res_masks", "iou_predictions"],
        dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
        opset_version=opset, dynamo=False,
    )
    return enc_path, dec_path


def write_reference(enc_path, dec_path, ref_dir, name):
    """onnxruntime outputs on deterministic inputs, as little-endian f32 files, plus the
    inputs' recipe (tests/sam.rs rebuilds the same inputs)."""
    import numpy as np
    import onnxruntime as ort

    os.makedirs(ref_dir, exist_ok=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    enc = ort.InferenceSession(enc_path, so, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(dec_path, so, providers=["CPUExecutionProvider"])
    image = reference_image()
    emb = enc.run(None, {"image": image})[0]
    emb.astype("<f4").tofile(os.path.join(ref_dir, f"{name}_embedding.f32"))
    for prompt_name, coords, labels, mask, has_mask in reference_prompts(emb.shape[1]):
        masks, iou = dec.run(None, {
            "image_embeddings": emb, "point_coords": coords, "point_labels": labels,
            "mask_input": mask, "has_mask_input": has_mask,
        })
        # Every 4th row and column keeps the fixture small and still covers the whole mask.
        masks[:, :, ::4, ::4].astype("<f4").tofile(os.path.join(ref_dir, f"{name}_{prompt_name}_masks_s4.f32"))
        iou.astype("<f4").tofile(os.path.join(ref_dir, f"{name}_{prompt_name}_iou.f32"))
        if prompt_name == "point":
            write_postprocess_reference(masks[:, 1:2], ref_dir, name)


def write_postprocess_reference(low_res, ref_dir, name):
    """SAM's own `Sam.postprocess_masks` (upscale to 1024, crop, resize to the image) on one
    decoder output, for an image of 451x300 (landscape) and 300x451 (portrait); every 3rd
    row and column is kept."""
    import torch

    from mobile_sam.build_sam import build_sam_vit_t
    from mobile_sam.utils.transforms import ResizeLongestSide

    sam = build_sam_vit_t()
    for w, h in ((451, 300), (300, 451)):
        input_size = ResizeLongestSide(1024).get_preprocess_shape(h, w, 1024)
        up = sam.postprocess_masks(torch.from_numpy(low_res), input_size, (h, w)).numpy()
        assert up.shape == (1, 1, h, w)
        up[0, 0, ::3, ::3].astype("<f4").tofile(os.path.join(ref_dir, f"{name}_upscaled_{w}x{h}_s3.f32"))


def reference_image():
    """A deterministic 1x3x1024x1024 input that needs no RNG shared with Rust."""
    import numpy as np

    y, x = np.mgrid[0:1024, 0:1024].astype(np.float32)
    chans = [np.sin(x / 37.0) + np.cos(y / 23.0), np.sin((x + y) / 51.0) * 1.5, ((x * 7 + y * 13) % 97) / 48.5 - 1.0]
    return np.stack(chans)[None].astype(np.float32)


def reference_prompts(c):
    import numpy as np

    ramp = (np.arange(256 * 256, dtype=np.float32).reshape(1, 1, 256, 256) % 17.0) / 4.0 - 2.0
    none = np.zeros((1, 1, 256, 256), np.float32)
    f = np.float32
    return [
        ("point", np.array([[[500, 375], [0, 0]]], f), np.array([[1, -1]], f), none, np.array([0], f)),
        ("points_box", np.array([[[300, 200], [700, 640], [100, 120], [900, 800]]], f),
         np.array([[1, 0, 2, 3]], f), none, np.array([0], f)),
        ("mask", np.array([[[10, 1000], [0, 0]]], f), np.array([[1, -1]], f), ramp, np.array([1], f)),
    ]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    w = p.add_mutually_exclusive_group(required=True)
    w.add_argument("--checkpoint", help="official MobileSAM weights (mobile_sam.pt)")
    w.add_argument("--random-weights", action="store_true", help="seeded random weights (tests/benchmarks only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="reduced widths/depths (with --random-weights)")
    p.add_argument("--out", default="models", help="output directory")
    p.add_argument("--name", default=None, help="file name stem (default mobilesam / mobilesam_seeded / mobilesam_tiny)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--reference", help="also write onnxruntime reference outputs into this directory")
    a = p.parse_args()
    if a.tiny and not a.random_weights:
        p.error("--tiny only goes with --random-weights")

    import torch

    install_timm_shim()
    from mobile_sam import build_sam_vit_t

    torch.manual_seed(a.seed)
    if a.tiny:
        sam = build_tiny(torch)
        name = a.name or "mobilesam_tiny"
    elif a.checkpoint:
        sam = build_sam_vit_t(checkpoint=a.checkpoint)
        name = a.name or "mobilesam"
    else:
        sam = build_sam_vit_t()
        name = a.name or "mobilesam_seeded"
    if a.random_weights:
        randomise_norms(torch, sam, a.seed)
    sam.eval()
    enc, dec = export(torch, sam, a.out, name, a.opset)
    for path in (enc, dec):
        print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB)")
    if a.reference:
        write_reference(enc, dec, a.reference, name)
        print(f"wrote references to {a.reference}")


if __name__ == "__main__":
    main()
