"""Book 5.3: the convolutional denoiser, trained on clip(x + 0.5 N(0,1), 0, 1) vs the clean x.

Command:  python launch.py --config=conv_denoise
Recipe:   adadelta (lr 1.0), batch 128, 100 epochs, no early stopping (as in the book),
          best checkpoint on val_loss; binary cross-entropy.
Expected: test PSNR 18.81 dB, SSIM 0.635 from the best epoch (94), against 9.30 dB for the
          noisy input; the +8 dB quality bar is passed at epoch 4. 15 minutes on 2 idle cores
          of an AMD EPYC with AVX-512 (8-9 s an epoch), peak RSS 0.88 GB; another CPU may
          round differently (on an AVX2-only EPYC: 18.81 dB, SSIM 0.630, best epoch 96).
"""

from configs import common


def get_config():
    config = common.get_config()
    config.model = "conv"
    config.noise_factor = 0.5
    config.epochs = 100
    config.batch_size = 128
    return config
