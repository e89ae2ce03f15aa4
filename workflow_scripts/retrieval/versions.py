"""Version constants that enter artifact versions; imported by the Snakefile, so this module stays dependency-free."""

from __future__ import annotations

# Bump when the demo generator's output for a given configuration changes.
GENERATOR_VERSION = (
    "3"  # 2: independent random streams per split; 3: held-out validation photos, collage training instances
)


# Bump when decoding gives other pixels or sizes for the same file (enters every image list's version).
# 2: EXIF orientation applied, 16-bit/float scaled to 8 bits, alpha on white, pixel cap; 3: a TIFF's orientation
# applied once (Pillow's TIFF reader and OpenCV turn TIFFs themselves); 4: a PNG's transparent colour or gray level
# (tRNS) on white, odd-sized JPEGs over the cap reduced as planned (they were decoded in full), camera JPEGs (MPO)
# reduced, a reduced JPEG's keypoints mapped back by the exact scale (SIFT's as pixel centres), a damaged TIFF
# page's orientation not applied; 5: an embedded ICC profile other than sRGB's is applied (pixels in sRGB), camera raw
# files are refused (their first TIFF directory, a preview, was read as the photo); 6: a HEIF's or AVIF's colour code
# points (nclx: Display P3, BT.2020, PQ, HLG) are converted to sRGB, and so is Adobe RGB marked in EXIF (R03, or
# ColorSpace 2)
DECODER_VERSION = "6"


# Bump a backbone's entry when its extraction gives other features for the same configuration; it enters that
# backbone's extraction versions and feature-cache key only (DINOv2's stay as they were).
# resnet 2: ReLU+ (pooling.relup, SuperGlobal's, for the global descriptor) no longer reaches the local descriptors
# and, with GeM+ off, a CVNet checkpoint's learned GeM p (head.pool.p) is pooled with, not 3
# sift 2: keypoints of a downscaled image (sift.max_side, sift.scale) are mapped back as pixel centres,
# (x + 0.5) / f - 0.5, not x / f (up to 0.5 / f - 0.5 px off); images at their own size are unchanged
# resnet 3: a checkpoint with torchvision's names (trained on RGB) is given RGB (it was given BGR, CVNet's order), and
# positions of a resized image are mapped back as pixel centres, as SIFT's
BACKBONE_VERSIONS = {"resnet": "3", "sift": "2"}


# Bump when what the unsupervised and supervised fits learn from changes; it enters the versions of PCA-whitening,
# Lw, SSP's anchors and SSP's query model (and, through them, what follows). 2: images without features (all-zero
# global descriptors, featureless.py) are left out of the fits instead of entering them as zero vectors
FIT_VERSION = "2"


# Bump when ASMK's inverted file or search writes other content for the same configuration; it enters the inverted
# file's version (and, through it, the search's and what follows). 2: a multiple assignment beyond the codebook's
# words is capped at them (word -1 was written, and every search of the file failed), and the search records both
# sides' images without features (a featureless query's row scored -inf; an older file left the evaluation with none)
ASMK_VERSION = "2"


# Bump when SSP's query model trains to other weights for the same configuration; it enters the query model's version
# (and, through it, the SSP evaluation's). 2: sub-vectors without a direction (an unwhitened VLAD's empty visual
# words) are left out of the loss; their normalisation's gradient wrecked the adapter at its first step
SSP_VERSION = "2"
