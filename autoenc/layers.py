"""Layers for `autoenc.models`: fused stand-ins that compute the Keras layers' functions of the
same weights (so the same checkpoints) with less work (`UpsampledConv2D`, `UpsampledSkipConv2D`,
`PassPair`, `MaxPoolingThenReLU`), and the layouts that pack and unpack the U-Net's code
(`SpaceToDepth`, `DepthToSpace`, `SplitChannels`)."""

import keras
import numpy as np
import tensorflow as tf

# Along one axis, the taps w(-1), w(0), w(+1) of a 3x3 kernel that sum to each tap of the stride-2
# 'same' transposed kernel k, whose y[2i] = k[1] x[i] + k[3] x[i - 1], y[2i + 1] = k[0] x[i + 1]
# + k[2] x[i] on a nearest-upsampled input; and which tap of k output row 2i + a reads through
# 3x3 kernel row r (input row i + r - 1): _PARITY_TAP[a][r], or none (-1).
_TAPS = np.array([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], np.float32)
_TAPS_2D = np.kron(_TAPS, _TAPS)  # both axes in one matmul
_PARITY_TAP = [[3, 1, -1], [-1, 2, 0]]


def _parity_kernel_indices(filters: int, channels: int) -> np.ndarray:
    """The index of each parity kernel entry (3, 3, channels, (a, b, filter)) in the flattened
    transposed kernel (4, 4, filters, channels) with a zero appended (the zero taps' index)."""
    indices = np.full([3, 3, channels, 2, 2, filters], 16 * filters * channels, np.int32)
    for r, c, a, b in np.ndindex(3, 3, 2, 2):
        t, u = _PARITY_TAP[a][r], _PARITY_TAP[b][c]
        if t >= 0 and u >= 0:
            flat = ((t * 4 + u) * filters + np.arange(filters)) * channels
            indices[r, c, :, a, b, :] = flat[None, :] + np.arange(channels)[:, None]
    return indices.reshape(3, 3, channels, 4 * filters)


class UpsampledConv2D(keras.layers.Conv2D):
    """`UpSampling2D(2)` then `Conv2D(filters, 3, padding="same")`, as one layer.

    A Conv2D's weights, the same outputs up to float rounding: each output of a 3x3 convolution
    on a nearest-upsampled image sees 2x2 input pixels, so the pair is one stride-2 transposed
    convolution with a 4x4 kernel summed from the 3x3 one (16 multiply-adds instead of 36)."""

    # Conv2D's arguments this layer fixes, with the values it accepts (get_config's too).
    FIXED = {
        "kernel_size": (3, (3, 3)),
        "strides": (1, (1, 1)),
        "padding": ("same",),
        "dilation_rate": (1, (1, 1)),
        "groups": (1,),
        "data_format": (None, "channels_last"),
        "use_bias": (True,),
    }
    # oneDNN's transposed convolution costs as much for 1 filter as for 16 (docs/speed.md).
    PARITY_FORWARD_MAX_FILTERS = 4

    def __init__(self, filters: int, activation=None, **kwargs):
        for name, allowed in self.FIXED.items():
            value = kwargs.pop(name, allowed[0])
            if (tuple(value) if isinstance(value, list) else value) not in allowed:
                raise ValueError(f"UpsampledConv2D computes only {name}={allowed[0]!r}")
        super().__init__(filters, 3, padding="same", activation=activation, **kwargs)

    def convolution_op(self, inputs, kernel):
        channels = kernel.shape[2]
        kernel = tf.reshape(kernel, [9, channels * self.filters])
        kernel = tf.matmul(tf.constant(_TAPS_2D, kernel.dtype), kernel)
        # (4, 4, filters, channels): conv2d_transpose wants the output channels first.
        kernel = tf.transpose(tf.reshape(kernel, [4, 4, channels, self.filters]), [0, 1, 3, 2])
        if self.filters <= self.PARITY_FORWARD_MAX_FILTERS:
            return transposed_conv_by_parity(inputs, kernel)
        return transposed_conv(inputs, kernel)

    def call(self, inputs):
        return self._bias_and_activation(self.convolution_op(inputs, self.kernel))

    def _bias_and_activation(self, outputs):
        # Not tf.nn.bias_add, whose gradient sums in 16 bits: far off in bfloat16 (test_layers.py).
        outputs = outputs + tf.cast(self.bias, outputs.dtype)
        return outputs if self.activation is None else self.activation(outputs)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        doubled = [None if size is None else 2 * size for size in (height, width)]
        return (batch, *doubled, self.filters)


def transposed_conv(inputs, kernel):
    """The stride-2 'same' transposed convolution of `inputs` by (4, 4, filters, channels)."""
    shape = tf.shape(inputs)
    output_shape = tf.stack([shape[0], 2 * shape[1], 2 * shape[2], kernel.shape[2]])
    return tf.nn.conv2d_transpose(inputs, kernel, output_shape, strides=2, padding="SAME")


@tf.custom_gradient
def transposed_conv_by_parity(inputs, kernel):
    """`transposed_conv`, its forward pass one 3x3 convolution with an output channel per output
    parity and filter, then `depth_to_space`: 9 taps where 4 are not zero, but on oneDNN's faster
    forward kernels. Its gradients are the ops TensorFlow's gradient of conv2d_transpose runs."""
    _, _, filters, channels = kernel.shape
    taps = tf.concat([tf.reshape(kernel, [-1]), tf.zeros([1], kernel.dtype)], 0)
    by_parity = tf.gather(taps, _parity_kernel_indices(filters, channels))  # exact copies
    outputs = tf.nn.depth_to_space(tf.nn.conv2d(inputs, by_parity, 1, "SAME"), 2)

    def gradients(upstream):
        strides = [1, 2, 2, 1]
        kernel_gradient = tf.raw_ops.Conv2DBackpropFilter(
            input=upstream,
            filter_sizes=tf.shape(kernel),
            out_backprop=inputs,
            strides=strides,
            padding="SAME",
        )
        return tf.nn.conv2d(upstream, kernel, strides, "SAME"), kernel_gradient

    return outputs, gradients


class UpsampledSkipConv2D(UpsampledConv2D):
    """A U-Net's `Conv2D(filters, 3, padding="same")` on `Concatenate()([UpSampling2D(2)(x),
    skip])`, called on `[x, skip]` with Conv2D's kernel: a convolution of a concatenation is the
    sum of its parts', x's channels as in `UpsampledConv2D`, the skip's as in a Conv2D."""

    def __init__(self, filters: int, activation=None, **kwargs):
        super().__init__(filters, activation, **kwargs)
        self.input_spec = None  # two inputs; Conv2D's spec describes one

    def build(self, input_shape):
        low, skip = input_shape
        self.low_channels = low[-1]
        super().build((*skip[:-1], low[-1] + skip[-1]))
        self.input_spec = None

    def call(self, inputs):
        low, skip = inputs
        outputs = self.convolution_op(low, self.kernel[:, :, : self.low_channels])
        outputs += tf.nn.conv2d(skip, self.kernel[:, :, self.low_channels :], 1, "SAME")
        return self._bias_and_activation(outputs)

    def compute_output_shape(self, input_shape):
        pair = isinstance(input_shape[0], (list, tuple))  # Conv2D.build checks one shape
        return super().compute_output_shape(input_shape[0] if pair else input_shape)


class MaxPoolingThenReLU(keras.layers.MaxPooling2D):
    """`MaxPooling2D` on a convolution's output before its ReLU, then the ReLU: a maximum commutes
    with ReLU, so these are Conv2D(relu) then MaxPooling2D's numbers and gradients exactly, in
    any precision, with the ReLU on a quarter of the pixels."""

    def call(self, inputs):
        return tf.nn.relu(super().call(inputs))


class PassPair(keras.layers.Layer):
    """Passes its two inputs on, where a Concatenate was (keeping checkpoints' layer positions)."""

    def call(self, inputs):
        return list(inputs)

    def compute_output_shape(self, input_shape):
        return list(input_shape)


class SpaceToDepth(keras.layers.Layer):
    """Moves each `block` x `block` patch of pixels into channels (tf.nn.space_to_depth)."""

    def __init__(self, block: int, **kwargs):
        super().__init__(**kwargs)
        self.block = block

    def call(self, x):
        return tf.nn.space_to_depth(x, self.block)

    def get_config(self):
        return {**super().get_config(), "block": self.block}


class DepthToSpace(SpaceToDepth):
    """The inverse of `SpaceToDepth` with the same block (tf.nn.depth_to_space)."""

    def call(self, x):
        return tf.nn.depth_to_space(x, self.block)


class SplitChannels(keras.layers.Layer):
    """Splits the last axis into consecutive parts of the given sizes (a list of tensors)."""

    def __init__(self, sizes: tuple, **kwargs):
        super().__init__(**kwargs)
        self.sizes = tuple(sizes)

    def call(self, x):
        return tf.split(x, list(self.sizes), axis=-1)

    def get_config(self):
        return {**super().get_config(), "sizes": self.sizes}
