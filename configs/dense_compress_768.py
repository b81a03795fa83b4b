"""Book 5.2's sanity check: encoding_dim 768 leaves almost no compression, so it nearly copies.

Command:  python launch.py --config=dense_compress_768
Result:   see README.md's results table; its test PSNR is far above dense_compress's.
"""

from configs import dense_compress


def get_config():
    config = dense_compress.get_config()
    config.encoding_dim = 768
    return config
