"""Book 5.2's sanity check: encoding_dim 768 leaves almost no compression, so it nearly copies.

Command:  python launch.py --config=dense_compress_768
          python launch.py --config=dense_compress_768 --config.optimizer=adam
Recipe:   dense_compress's with a 768-wide code.
Result:   the results table of README.md, both commands.
"""

from configs import dense_compress


def get_config():
    config = dense_compress.get_config()
    config.encoding_dim = 768
    return config
