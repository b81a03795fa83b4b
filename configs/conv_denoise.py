"""Book 5.3: the convolutional denoiser, trained on clip(x + 0.5 N(0,1), 0, 1) vs the clean x.

Command:  python launch.py --config=conv_denoise
Recipe:   adadelta (lr 1.0), batch 128, 100 epochs, no early stopping (as in the book),
          best checkpoint on val_loss; binary cross-entropy.
Result:   the results table of README.md (also the 4-epoch run, --config.epochs=4).
"""

from configs import common


def get_config():
    config = common.get_config()
    config.model = "conv"
    config.noise_factor = 0.5
    config.epochs = 100
    config.batch_size = 128
    return config
