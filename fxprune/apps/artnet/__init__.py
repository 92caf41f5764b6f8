"""ArtNet: real-time universal style transfer with a GoogLeNet encoder, the sandwich swap transform
(S²) and a mirrored decoder; AdaIN and WCT as alternative transforms; a VGG-19 AdaIN baseline.

- ``GoogLeNetEncoder``: torchvision's GoogLeNet up to a configurable block (default
  ``inception3b``, stride 8, 480 channels), ImageNet input normalisation inside. Weights are
  random (seeded) unless a local torchvision checkpoint file is given; nothing is downloaded.
- ``mirror_decoder``: the encoder's stages in reverse — every conv / inception block becomes a
  3x3 conv from its output width back to its input width + ReLU, every stride-2 stage a nearest
  x2 upsampling; the last conv (to RGB) has no ReLU.
- Transforms (``ChannelAligned`` modules, so the compiler prunes through them): ``AdaIN`` (per
  channel mean/std), ``WCT`` (whitening and colouring), ``S2`` = whitening -> style swap with 3x3
  normalised style patches -> colouring with the style statistics. ``alpha`` blends the result
  with the content features. Channels that are zero in both the content and the style features
  of a sample are left out of the statistics and come out zero: exactly what removing them does,
  so pruned and masked-dense models agree (and the covariances stay well conditioned).
- ``ArtNet(content, style)`` maps two N x 3 x H x W images in [0, 1] to an N x 3 x H x W image.
- ``train_decoder``: reconstruction + perceptual loss on images (scikit-image's samples).
- Zero-channel pruning (``fxprune.methods.zero_channel_prune``) is the exact pruning of ArtNet's paper.
"""

from .encoder import (GOOGLENET_CUTS, IMAGENET_MEAN, IMAGENET_STD, GoogLeNetEncoder, Normalize, Stage, VGGEncoder,
                      mirror_decoder)
from .images import SAMPLE_IMAGES, load_image, random_crops, sample_image, save_image, to_tensor
from .network import BUNDLED, WEIGHTS_DIR, ArtNet, StyleTransferNet, VGGAdaIN, default_decoder_weights
from .training import train_decoder
from .transforms import (S2, TRANSFORMS, WCT, AdaIN, FeatureTransform, Stats, colour, match_patches, mean_cov,
                         patch_grid, style_patches, style_swap, whiten)

__all__ = ["BUNDLED", "GOOGLENET_CUTS", "IMAGENET_MEAN", "IMAGENET_STD", "SAMPLE_IMAGES", "S2", "TRANSFORMS", "WCT",
           "WEIGHTS_DIR", "AdaIN", "ArtNet", "FeatureTransform", "GoogLeNetEncoder", "Normalize", "Stage", "Stats",
           "StyleTransferNet", "VGGAdaIN", "VGGEncoder", "colour", "default_decoder_weights", "load_image",
           "match_patches", "mean_cov", "mirror_decoder", "patch_grid", "random_crops", "sample_image", "save_image",
           "style_patches", "style_swap", "to_tensor", "train_decoder", "whiten"]
