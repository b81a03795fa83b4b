"""`layers.UpsampledConv2D` and `layers.MaxPoolingThenReLU` against the Keras layers they stand
for."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from autoenc import layers
from autoenc.layers import MaxPoolingThenReLU, PassPair, UpsampledConv2D, UpsampledSkipConv2D


def _outputs_and_gradients(layers, weights, x):
    """The output of `layers` in turn on x, and the gradients of a weighted sum of it for x and
    for `weights`."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = x
        for layer in layers:
            y = layer(y)
        weighting = tf.reshape(tf.range(tf.size(y), dtype=y.dtype), tf.shape(y)) / 100.0
        loss = tf.reduce_sum(y * weighting)
    return [y, *tape.gradient(loss, [x, *weights])]


@pytest.mark.parametrize(
    "filters,activation", [(32, "relu"), (1, None), (3, "relu"), (5, "sigmoid")]
)
@pytest.mark.parametrize("height,width", [(7, 7), (5, 9), (1, 2)])
def test_same_outputs_and_gradients_as_upsampling_then_conv(filters, activation, height, width):
    fused = UpsampledConv2D(filters, activation)
    conv = keras.layers.Conv2D(filters, 3, padding="same", activation=activation)
    for layer in (fused, conv):
        layer.build((None, None, None, 3))
    rng = np.random.default_rng(filters)
    weights = [rng.normal(size=w.shape).astype("float32") * 0.3 for w in conv.weights]
    fused.set_weights(weights)
    conv.set_weights(weights)
    x = tf.constant(rng.uniform(size=(2, height, width, 3)), tf.float32)

    mine = _outputs_and_gradients([fused], fused.trainable_weights, x)
    book = _outputs_and_gradients([keras.layers.UpSampling2D(2), conv], conv.trainable_weights, x)
    assert mine[0].shape == (2, 2 * height, 2 * width, filters)
    for a, b in zip(mine, book, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("height,width", [(7, 7), (5, 9)])
def test_skip_variant_is_upsampling_concatenation_then_conv(height, width):
    fused = UpsampledSkipConv2D(4, "relu")
    conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu")
    fused.build([(None, None, None, 3), (None, None, None, 2)])
    conv.build((None, None, None, 5))  # 3 upsampled channels, then 2 skip channels
    rng = np.random.default_rng(7)
    weights = [rng.normal(size=w.shape).astype("float32") * 0.3 for w in conv.weights]
    fused.set_weights(weights)
    conv.set_weights(weights)
    low = tf.constant(rng.uniform(size=(2, height, width, 3)), tf.float32)
    skip = tf.constant(rng.uniform(size=(2, 2 * height, 2 * width, 2)), tf.float32)

    def book(pair):
        upsampled = keras.layers.UpSampling2D(2)(pair[0])
        return conv(keras.layers.Concatenate()([upsampled, pair[1]]))

    with tf.GradientTape(persistent=True) as tape:
        tape.watch([low, skip])
        mine, theirs = fused(PassPair()([low, skip])), book([low, skip])
        weighting = tf.sin(tf.reshape(tf.range(tf.size(mine), dtype=tf.float32), tf.shape(mine)))
        losses = [tf.reduce_sum(y * weighting) for y in (mine, theirs)]
    np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)
    for mine_grad, book_grad in zip(
        tape.gradient(losses[0], [low, skip, *fused.trainable_weights]),
        tape.gradient(losses[1], [low, skip, *conv.trainable_weights]),
        strict=True,
    ):
        np.testing.assert_allclose(mine_grad, book_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("filters", [1, 2, 4])
@pytest.mark.parametrize("height,width", [(7, 7), (5, 9), (1, 2)])
def test_parity_form_is_the_transposed_convolution_with_its_gradients(filters, height, width):
    rng = np.random.default_rng(filters * height * width)
    x = tf.constant(rng.normal(size=(2, height, width, 6)), tf.float32)
    kernel = tf.constant(rng.normal(size=(4, 4, filters, 6)), tf.float32)
    upstream = tf.constant(rng.normal(size=(2, 2 * height, 2 * width, filters)), tf.float32)

    def outputs_and_gradients(transposed_conv):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = transposed_conv(x, kernel)
        return [y, *tape.gradient(y, [x, kernel], output_gradients=upstream)]

    by_parity = outputs_and_gradients(layers.transposed_conv_by_parity)
    transposed = outputs_and_gradients(layers.transposed_conv)
    np.testing.assert_allclose(by_parity[0], transposed[0], rtol=1e-5, atol=1e-5)
    for mine, reference in zip(by_parity[1:], transposed[1:], strict=True):
        np.testing.assert_array_equal(mine, reference)  # the same ops on the same inputs


def _forward_op_types(layer, shape) -> set:
    traced = tf.function(layer).get_concrete_function(tf.TensorSpec(shape, tf.float32))
    return {op.type for op in traced.graph.get_operations()}


def test_few_filters_take_the_parity_form_and_many_the_transposed_convolution():
    few = UpsampledConv2D(UpsampledConv2D.PARITY_FORWARD_MAX_FILTERS)
    many = UpsampledConv2D(UpsampledConv2D.PARITY_FORWARD_MAX_FILTERS + 1)
    few_ops, many_ops = (_forward_op_types(layer, (2, 7, 7, 3)) for layer in (few, many))
    assert "DepthToSpace" in few_ops and "Conv2DBackpropInput" not in few_ops
    assert "Conv2DBackpropInput" in many_ops and "DepthToSpace" not in many_ops


def test_bfloat16_bias_gradient_is_as_close_to_float32_as_the_kernels():
    # A batch of 128 14x14 outputs: with Keras' bias add (BiasAdd, whose gradient op sums in
    # bfloat16) the bias gradient was off by up to 97% here; the reference is the same layer
    # in float32.
    x = np.random.default_rng(1).uniform(size=(128, 7, 7, 32)).astype("float32")

    def bias_gradient(dtype):
        layer = UpsampledConv2D(32, "relu", dtype=dtype)
        layer.build((None, 7, 7, 32))
        rng = np.random.default_rng(2)
        layer.set_weights([rng.normal(size=w.shape).astype("float32") * 0.1 for w in layer.weights])

        @tf.function
        def gradient():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.cast(layer(x), tf.float32))
            return tape.gradient(loss, layer.bias)

        return gradient().numpy()

    reference = bias_gradient("float32")
    np.testing.assert_allclose(bias_gradient("mixed_bfloat16"), reference, rtol=0.03, atol=1e-3)


def test_conv2d_arguments_it_does_not_compute_are_refused():
    for bad in ({"kernel_size": 5}, {"strides": 2}, {"use_bias": False}, {"padding": "valid"}):
        with pytest.raises(ValueError, match="UpsampledConv2D computes only"):
            UpsampledConv2D(4, **bad)
    UpsampledConv2D(4, kernel_size=(3, 3), strides=[1, 1], padding="same")  # its own values


def test_config_round_trip():
    layer = UpsampledConv2D(8, "relu", name="up", dtype="mixed_bfloat16")
    again = UpsampledConv2D.from_config(layer.get_config())
    assert (again.filters, again.name, again.compute_dtype) == (8, "up", "bfloat16")
    assert again.activation is keras.activations.relu
    assert again.compute_output_shape((None, 7, None, 3)) == (None, 14, None, 8)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("height,width", [(28, 28), (7, 7), (5, 9)])
def test_relu_after_pooling_is_pooling_after_relu_exactly(dtype, height, width):
    rng = np.random.default_rng(height * width)
    x = rng.normal(size=(3, height, width, 4))
    # Windows whose maximum is negative, zero, or shared by several pixels (ties).
    x[0, :2, :2, 0] = -1.0
    x[0, :2, 2:4, 1] = [[0.0, -2.0], [0.0, 0.0]]
    x[1, :2, :2, 2] = 0.5
    x = tf.constant(x, dtype)
    mine = _outputs_and_gradients([MaxPoolingThenReLU(2, padding="same")], [], x)
    book = [keras.layers.ReLU(), keras.layers.MaxPooling2D(2, padding="same")]
    book = _outputs_and_gradients(book, [], x)
    assert mine[0].shape == (3, (height + 1) // 2, (width + 1) // 2, 4)
    for a, b in zip(mine, book, strict=True):
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
