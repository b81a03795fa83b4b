"""Fields every experiment has; the experiment files import this and change what differs."""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    """Defaults shared by every experiment (not an experiment by itself)."""
    config = ml_collections.ConfigDict()
    config.model = "conv"  # a name from autoenc.models: dense, conv, deep_dense, unet
    config.noise_factor = 0.0  # input = clip(x + noise_factor * N(0, 1), 0, 1)
    # Above 0, training draws each image's noise factor from U[0, noise_factor_max], anew each
    # epoch (a blind denoiser); validation and the test score keep noise_factor.
    config.noise_factor_max = 0.0
    config.epochs = 1
    config.batch_size = 128  # global batch, split across replicas
    config.train_examples = 0  # use only the first N training images; 0 = all 60,000
    config.seed = 0
    config.optimizer = "adadelta"  # "adadelta" or "adam"
    # None = the optimizer's book-faithful default: 1.0 for adadelta (as Keras 1 ran it),
    # 0.001 for adam. Keras 3's own Adadelta default (0.001) barely trains.
    config.learning_rate = config_dict.placeholder(float)
    # "constant", or "cosine": from learning_rate down to 0 over the config's epochs (Keras'
    # CosineDecay), so the last epochs settle instead of jittering at the full rate.
    config.lr_schedule = "constant"
    config.data_dir = ""  # "" = search Keras' cache, then /usr/share/datasets/fashion-mnist

    # Mirrors keras.callbacks.EarlyStopping; off unless an experiment turns it on.
    config.early_stopping = ml_collections.ConfigDict()
    config.early_stopping.enabled = False
    config.early_stopping.monitor = "val_loss"
    config.early_stopping.min_delta = 0.0
    config.early_stopping.patience = 0
    config.early_stopping.mode = "auto"
    config.early_stopping.baseline = config_dict.placeholder(float)
    config.early_stopping.restore_best_weights = False
    config.early_stopping.start_from_epoch = 0

    config.steps_per_loop = 20  # train steps per tf.function call (fewer host round trips)
    config.checkpoint_every_steps = 0  # 0 = checkpoint at the end of every epoch only
    config.image_every_epochs = 1  # TensorBoard image grid interval; 0 = never
    config.loss_every_steps = 100  # TensorBoard batch_loss every N optimizer steps; 0 = never
    config.histograms = False  # TensorBoard weight histograms every epoch
    # "float32", "mixed_bfloat16" (CPUs/TPUs with bf16 units) or "mixed_float16" (GPUs; with
    # dynamic loss scaling). The sigmoid and the loss stay float32 (the dense models' whole
    # output layer). A mixed precision also draws the training noise from 16 random bits per
    # number (a cheaper sampler).
    config.precision = "float32"
    config.xla = False  # compile each replica's loss and gradients with XLA (jit_compile)
    config.deterministic = True  # tf.config.experimental.enable_op_determinism()
    return config
