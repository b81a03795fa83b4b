"""Per-example loss and image-quality measures, shared by training, evaluation and reports.

Every function takes a batch of targets and outputs in [0, 1] and returns one value per example,
so a distributed evaluation can sum them across replicas and divide by the true count (partial
last batches included). Loss is averaged over pixels first: summing 784 pixels would scale the
loss (and the effective learning rate) by 784 (tensorflow#48586).
"""

import keras
import tensorflow as tf

from autoenc.models import IMAGE_SHAPE

# The order of the sums `eval_sums` returns; index with QUALITY_NAMES.index(name).
QUALITY_NAMES = ("bce", "mse", "psnr", "ssim")


def per_example_bce(targets: tf.Tensor, outputs: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy averaged over all pixels of each example, as Keras' BCE does."""
    pixel_bce = keras.losses.binary_crossentropy(targets, outputs)  # reduces the last axis
    batch = tf.shape(pixel_bce)[0]
    return tf.reduce_mean(tf.reshape(pixel_bce, [batch, -1]), axis=1)


def per_example_quality(targets: tf.Tensor, outputs: tf.Tensor) -> tf.Tensor:
    """Per-example [bce, mse, psnr, ssim] (shape [batch, 4]) of outputs against targets.

    PSNR is 10 log10(1 / MSE) per image (peak value 1), with MSE floored at 1e-10 so a perfect
    copy scores 100 dB rather than infinity; SSIM is `tf.image.ssim` with max_val 1.
    """
    targets = tf.reshape(targets, [-1, *IMAGE_SHAPE])
    outputs = tf.reshape(outputs, [-1, *IMAGE_SHAPE])
    bce = per_example_bce(targets, outputs)
    mse = tf.reduce_mean(tf.square(targets - outputs), axis=[1, 2, 3])
    psnr = 10.0 * tf.math.log(1.0 / tf.maximum(mse, 1e-10)) / tf.math.log(10.0)
    ssim = tf.image.ssim(targets, outputs, max_val=1.0)
    return tf.stack([bce, mse, psnr, ssim], axis=1)
