"""Book 5.2's sanity check: encoding_dim 768 leaves almost no compression, so it nearly copies.

Command:  python launch.py --config=dense_compress_768
Expected: 50 epochs (adadelta is still improving), test PSNR 19.28 dB, SSIM 0.642; with
          --config.optimizer=adam it nearly copies: early stop at 25, 25.19 dB, SSIM 0.869.
"""

from configs import dense_compress


def get_config():
    config = dense_compress.get_config()
    config.encoding_dim = 768
    return config
