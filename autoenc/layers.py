"""Layers the Keras set lacks, used by `autoenc.models`.

`UpsampledConv2D` is Keras' `UpSampling2D(2)` followed by `Conv2D(filters, 3, padding="same")`,
the same function of the same weights, computed as one transposed convolution on the
low-resolution input (with a few filters, its forward pass an ordinary convolution per output
parity); `UpsampledSkipConv2D` is the U-Net's version, with a skip connection
concatenated to the upsampled input, and `PassPair` stands where that concatenation was.
`MaxPoolingThenReLU` moves a convolution's ReLU after the max pooling that follows it. The
three layouts (`SpaceToDepth`, `DepthToSpace`, `SplitChannels`) pack and unpack the U-Net's code.
"""

import keras
import numpy as np
import tensorflow as tf

# Which taps of a 3x3 kernel (rows: offsets -1, 0, +1) reach each of the 4 taps of the
# equivalent stride-2 transposed convolution, along one axis. On a nearest-upsampled input
# u[2i + a] = x[i], output row 2i reads x[i - 1] (tap -1) and x[i] (taps 0 and +1), and output
# row 2i + 1 reads x[i] (taps -1 and 0) and x[i + 1] (tap +1). A transposed convolution with
# stride 2, a 4-tap kernel k and 'same' padding computes y[2i] = k[1] x[i] + k[3] x[i - 1] and
# y[2i + 1] = k[0] x[i + 1] + k[2] x[i], so k = [w(+1), w(0) + w(+1), w(-1) + w(0), w(-1)].
_TAPS = np.array([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], np.float32)
# Both axes at once: row (t, u) of this 16x9 matrix sums the 3x3 taps (i, j) that reach 4x4 tap
# (t, u), so one small matmul maps the kernel (an einsum took several times longer per step).
_TAPS_2D = np.kron(_TAPS, _TAPS)

# The same transposed convolution output parity by output parity: output row 2i + a is a 3x3
# 'same' convolution of x at row i whose kernel row r (input row i + r - 1) holds 4-tap k's tap
# _PARITY_TAP[a][r], or zero (-1): by the comment above, row 2i reads x[i - 1] through k[3] and
# x[i] through k[1]; row 2i + 1 reads x[i] through k[2] and x[i + 1] through k[0].
_PARITY_TAP = [[3, 1, -1], [-1, 2, 0]]


def _parity_kernel_indices(filters: int, channels: int) -> np.ndarray:
    """Where each entry of the parity kernel (3, 3, channels, 2 * 2 * filters; the output
    channels in depth_to_space's order a, b, filter) sits in the 4x4 transposed kernel (4, 4,
    filters, channels) flattened, with one zero appended: its index is the zero taps'."""
    zero = 16 * filters * channels
    indices = np.full([3, 3, channels, 2, 2, filters], zero, np.int32)
    for r, c, a, b in np.ndindex(3, 3, 2, 2):
        t, u = _PARITY_TAP[a][r], _PARITY_TAP[b][c]
        if t >= 0 and u >= 0:
            flat = ((t * 4 + u) * filters + np.arange(filters)) * channels
            indices[r, c, :, a, b, :] = flat[None, :] + np.arange(channels)[:, None]
    return indices.reshape(3, 3, channels, 4 * filters)


class UpsampledConv2D(keras.layers.Conv2D):
    """`UpSampling2D(2)` then `Conv2D(filters, 3, padding="same")`, as one layer.

    It is a Conv2D with the same weights, initialisers and checkpoint names (a 3x3 x channels
    x filters kernel and a bias) and computes the same outputs, up to float rounding, from the
    low-resolution input: each output pixel of a 3x3 convolution on a nearest-upsampled image
    sees only 2x2 input pixels, so the pair is one stride-2 transposed convolution with a 4x4
    kernel summed from the 3x3 one. That is 16 multiply-adds per input pixel and channel pair
    instead of 36, and no upsampled copy forward nor its gradient's sum backward. With at most
    PARITY_FORWARD_MAX_FILTERS filters the forward pass runs as one ordinary convolution with
    an output channel per output parity and filter (`transposed_conv_by_parity`), the
    gradients as before. It takes any input height and width.
    """

    # Conv2D's arguments this layer fixes, with the values it accepts (get_config's included).
    FIXED = {
        "kernel_size": (3, (3, 3)),
        "strides": (1, (1, 1)),
        "padding": ("same",),
        "dilation_rate": (1, (1, 1)),
        "groups": (1,),
        "data_format": (None, "channels_last"),
        "use_bias": (True,),
    }

    def __init__(self, filters: int, activation=None, **kwargs):
        for name, allowed in self.FIXED.items():
            if name in kwargs and _as_tuple(kwargs.pop(name)) not in map(_as_tuple, allowed):
                raise ValueError(f"UpsampledConv2D computes only {name}={allowed[0]!r}")
        super().__init__(filters, 3, padding="same", activation=activation, **kwargs)

    # Up to this many filters the forward pass runs parity by parity (`transposed_conv_by_parity`):
    # oneDNN's transposed convolution costs about as much for 1 filter as for 16, the parity
    # form's ordinary convolution much less, up to a few filters (docs/speed.md).
    PARITY_FORWARD_MAX_FILTERS = 4

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
        # A plain add, not Keras' (which becomes tf.nn.bias_add): BiasAdd's gradient op sums a
        # 16-bit gradient in 16 bits, and in bfloat16 over a batch of 128 14x14 outputs it was
        # off by up to 97%; an add's gradient (a Sum) was as close to float32's as Conv2D's.
        # After an ordinary convolution oneDNN fuses the bias gradient into the weight
        # gradient, which is why Keras' own layers do not show it; after a transposed one,
        # nothing does.
        outputs = outputs + tf.cast(self.bias, outputs.dtype)
        return outputs if self.activation is None else self.activation(outputs)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        doubled = [None if size is None else 2 * size for size in (height, width)]
        return (batch, *doubled, self.filters)


def transposed_conv(inputs, kernel):
    """The stride-2 'same' transposed convolution to twice the height and width of `inputs`
    (batch, height, width, channels); kernel: (4, 4, filters, channels)."""
    shape = tf.shape(inputs)
    output_shape = tf.stack([shape[0], 2 * shape[1], 2 * shape[2], kernel.shape[2]])
    return tf.nn.conv2d_transpose(inputs, kernel, output_shape, strides=2, padding="SAME")


@tf.custom_gradient
def transposed_conv_by_parity(inputs, kernel):
    """`transposed_conv(inputs, kernel)`, its forward pass computed as one ordinary 3x3
    convolution with an output channel per output parity and filter, then `depth_to_space`;
    its gradients are the transposed convolution's own, the same ops TensorFlow's gradient of
    it runs.

    The forward convolution multiplies 9 taps per output pixel where 4 are not zero, but runs
    on oneDNN's forward kernels, which for a few filters are much faster than its transposed
    one. Outputs agree with conv2d_transpose's to float rounding. kernel: (4, 4, filters,
    channels).
    """
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
        inputs_gradient = tf.nn.conv2d(upstream, kernel, strides, "SAME")
        return inputs_gradient, kernel_gradient

    return outputs, gradients


class UpsampledSkipConv2D(UpsampledConv2D):
    """A U-Net's `Conv2D(filters, 3, padding="same")` on `Concatenate()([UpSampling2D(2)(x),
    skip])`, as one layer called on `[x, skip]`.

    A convolution of a concatenation is the sum of the convolutions of its parts, so the
    kernel's first channels (x's) act on x as in `UpsampledConv2D` and the rest on the skip
    as an ordinary convolution. The kernel is the one Conv2D would hold (3x3 x channels of x
    and skip together x filters), so weights and checkpoints are the same.
    """

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
        kernel = self.kernel
        outputs = self.convolution_op(low, kernel[:, :, : self.low_channels])
        outputs += tf.nn.conv2d(skip, kernel[:, :, self.low_channels :], 1, "SAME")
        return self._bias_and_activation(outputs)

    def compute_output_shape(self, input_shape):
        pair = isinstance(input_shape[0], (list, tuple))  # Conv2D.build checks one shape
        return super().compute_output_shape(input_shape[0] if pair else input_shape)


class MaxPoolingThenReLU(keras.layers.MaxPooling2D):
    """`MaxPooling2D` applied to a convolution's output before its ReLU, then the ReLU.

    The book's encoder does Conv2D(relu) then MaxPooling2D; a maximum commutes with ReLU (a
    non-decreasing function), so pooling the convolution's raw output and applying the ReLU
    after gives the same numbers, in any precision, on a quarter of the pixels (forward, and
    the ReLU's gradient backward, an elementwise pass that runs slower in bfloat16 than in
    float32). The gradients are the same too: where a window's maximum is positive both route
    the gradient to the same input (ReLU changes no positive value), and where it is not both
    give zero. No weights: checkpoints are the book's.
    """

    def call(self, inputs):
        return tf.nn.relu(super().call(inputs))


class PassPair(keras.layers.Layer):
    """Hands its two inputs on as they are: stands where a Concatenate was, so the layer
    positions that checkpoints record stay the same."""

    def call(self, inputs):
        return list(inputs)

    def compute_output_shape(self, input_shape):
        return list(input_shape)


def _as_tuple(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


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
