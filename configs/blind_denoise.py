"""One blind U-Net denoiser for every noise level: each training image's level is drawn
uniformly from [0, 0.8] anew every epoch; validation and the test score stay at 0.5.

Command:  python launch.py --config=blind_denoise
          python launch.py --config=blind_denoise --mode=eval --noise_factor=X   # any level
Recipe:   unet_denoise's model (U-Net 16/32/64), adam at a constant 0.001, batch 128, 26 epochs,
          binary cross-entropy, trained on clip(x + s N(0,1), 0, 1) with s ~ U[0, 0.8] per image.
Result:   at 0.5, the results table of README.md; at every level from 0.1 to 0.8 against the
          noisy input and classical denoisers, docs/denoising_study.md (docs/studies.md).
"""

from configs import unet_denoise


def get_config():
    config = unet_denoise.get_config()
    config.noise_factor_max = 0.8  # training levels; noise_factor (0.5) is validation's
    # unet_denoise's model at Adam's constant rate for 26 epochs.
    config.epochs = 26
    config.lr_schedule = "constant"
    return config
