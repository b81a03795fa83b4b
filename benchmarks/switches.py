"""The configs the benchmarks measure and their speed switches: each switch is the config with
one or two fields changed, measured by `benchmarks.throughput` and checked for the same answers
by `benchmarks.same_answers`.
"""

import copy

from autoenc import config as config_lib

CONFIGS = ("dense_compress", "conv_denoise")
LONG_LOOP = 100  # steps_per_loop of the long-loop switches
BF16 = "bf16"
# arm name -> config fields it changes. The conv model's XLA needs op determinism off
# (autoenc.config.validate: no deterministic MaxPool gradient).
VARIANTS = {
    "dense_compress": {  # its default has xla on: the plain loop is the switch
        "no_xla": dict(xla=False),
        f"spl{LONG_LOOP}": dict(steps_per_loop=LONG_LOOP),
        BF16: dict(precision="mixed_bfloat16"),
    },
    "conv_denoise": {
        "xla": dict(xla=True, deterministic=False),
        f"spl{LONG_LOOP}": dict(steps_per_loop=LONG_LOOP),
        BF16: dict(precision="mixed_bfloat16"),
        "nondet": dict(deterministic=False),
    },
}


def variant_config(config, overrides: dict):
    """A copy of `config` with `overrides`, validated as `autoenc.train` validates it."""
    variant = copy.deepcopy(config)
    variant.update(overrides)
    config_lib.validate(variant)
    return variant
