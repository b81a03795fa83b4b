"""Book 5.2: the dense compression autoencoder, 784 -> 32 -> 784, with the book's recipe.

Command:  python launch.py --config=dense_compress
Recipe:   adadelta (lr 1.0), batch 256, up to 50 epochs, best checkpoint on val_loss,
          early stopping min_delta 0.0005, patience 2; binary cross-entropy, clean inputs.
Result:   the results table of README.md (command, epochs, minutes, test PSNR and SSIM, CPU).
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
    # Speed only (docs/speed.md): XLA fuses the small
    # matmuls, the elementwise ops and, with one replica, the optimizer update, and runs all the
    # steps of a call as one program.
    config.xla = True
    return config
