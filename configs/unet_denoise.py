"""A small U-Net denoiser at the book's noise, clip(x + 0.5 N(0,1), 0, 1), trained with Adam.

Command:  python launch.py --config=unet_denoise
Recipe:   U-Net with 16/32/64 channels (two 3x3 convs per level, two 2x2 poolings, skip
          connections), adam with a cosine decay from 0.001 to 0 over 50 epochs, batch 128, best
          checkpoint on val_loss; binary cross-entropy.
Result:   the results table of README.md; what it means: docs/models.md.
"""

from configs import common


def get_config():
    config = common.get_config()
    config.model = "unet"
    config.filters = 16  # channels at full resolution; 32 and 64 below
    config.noise_factor = 0.5
    config.optimizer = "adam"
    config.epochs = 50
    config.lr_schedule = "cosine"  # 0.001 down to 0 over the 50 epochs
    config.batch_size = 128
    return config
