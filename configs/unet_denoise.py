"""A small U-Net denoiser at the book's noise, clip(x + 0.5 N(0,1), 0, 1), trained with Adam.

Command:  python launch.py --config=unet_denoise
Recipe:   U-Net with 16/32/64 channels (two 3x3 convs per level, two 2x2 poolings, skip
          connections), adam (lr 0.001), batch 128, 26 epochs, best checkpoint on val_loss;
          binary cross-entropy.
Runtime and result: RESULT_PLACEHOLDER
"""

from configs import common


def get_config():
    config = common.get_config()
    config.model = "unet"
    config.filters = 16  # channels at full resolution; 32 and 64 below
    config.noise_factor = 0.5
    config.optimizer = "adam"
    config.epochs = 26
    config.batch_size = 128
    return config
