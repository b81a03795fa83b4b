"""Book 5.2: the dense compression autoencoder, 784 -> 32 -> 784, with the book's recipe.

Command:  python launch.py --config=dense_compress
Recipe:   adadelta (lr 1.0), batch 256, up to 50 epochs, best checkpoint on val_loss,
          early stopping min_delta 0.0005, patience 2; binary cross-entropy.
Runtime and result: see README.md's results table (measured on a 2-core CPU).
"""

from configs import common


def get_config():
    config = common.get_config()
    config.model = "dense"
    config.encoding_dim = 32
    config.activity_l1 = 1e-4  # the book's regularizers.l1(10e-5)
    config.epochs = 50
    config.batch_size = 256
    config.early_stopping.enabled = True
    config.early_stopping.min_delta = 0.0005
    config.early_stopping.patience = 2
    # Speed only (benchmarks/throughput.py: 1.36x the plain loop; same_answers.py: identical
    # val_loss): XLA fuses the two small matmuls and their elementwise ops.
    config.xla = True
    return config
