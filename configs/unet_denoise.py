"""A small U-Net denoiser at the book's noise, clip(x + 0.5 N(0,1), 0, 1), trained with Adam.

Command:  python launch.py --config=unet_denoise
Recipe:   U-Net with 16/32/64 channels (two 3x3 convs per level, two 2x2 poolings, skip
          connections), adam (lr 0.001), batch 128, 26 epochs, best checkpoint on val_loss;
          binary cross-entropy.
Runtime:  about 32 minutes (30.1 of them in the 26 epochs) on a 2-core AMD EPYC (AVX-512,
          AVX512-BF16) shared with other jobs; less on idle cores.
Result:   test PSNR 19.89 dB at noise 0.5, SSIM 0.701 (best epoch 23); the book's model has
          18.81 after its 100 epochs. See docs/models.md.
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
