"""A 32-number code that beats PCA: an MLP 784-512-256-32-256-512-784 trained with Adam.

Command:  python launch.py --config=deep_compress
Recipe:   adam (lr 0.001), batch 256, 100 epochs, best checkpoint on val_loss; binary
          cross-entropy, clean inputs. The code is linear (no ReLU, no L1 penalty).
Result:   the results table of README.md; against PCA at every width: docs/studies.md.
"""

from configs import common


def get_config():
    config = common.get_config()
    config.model = "deep_dense"
    config.encoding_dim = 32
    config.hidden_units = 512  # the first hidden layer; the second has 256
    config.optimizer = "adam"
    config.epochs = 100
    config.batch_size = 256
    # Dense layers only: XLA runs each call's steps as one program, as for dense_compress.
    config.xla = True
    return config
