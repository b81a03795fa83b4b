"""A small U-Net denoiser at the book's noise, clip(x + 0.5 N(0,1), 0, 1), trained with Adam.

Command:  python launch.py --config=unet_denoise
Recipe:   U-Net with 16/32/64 channels (two 3x3 convs per level, two 2x2 poolings, skip
          connections), adam with a cosine decay from 0.001 to 0 over 50 epochs, batch 128, best
          checkpoint on val_loss; binary cross-entropy.
Runtime:  25 minutes (24.4 of them in the 50 epochs, about 28 s each) on 2 idle cores of an
          AMD EPYC with AVX-512 and AVX512-BF16.
Result:   test PSNR 20.06 dB at noise 0.5, SSIM 0.709 (best epoch 50; 20.0 dB passed at epoch
          33); the book's model has 18.81 after its 100 epochs. See docs/models.md.
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
