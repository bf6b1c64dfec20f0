"""Mixed precision: which Keras policies this machine can run fast, and setting one.

Under a mixed policy the layers compute in float16 or bfloat16 and keep float32
weights; the distiller's discrepancy is computed in float32, and under
mixed_float16 both its optimizers scale the loss (`DataFreeDistiller.compile`).

Example:
>>> problem = unsupported("mixed_bfloat16")
>>> if problem is None:
...     keras.mixed_precision.set_global_policy("mixed_bfloat16")
"""

import os

import keras
import tensorflow as tf

# "auto" is not a Keras policy: `resolve` turns it into one.
POLICIES = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return set(" ".join(line for line in f if line.startswith("flags")).split())
    except OSError:  # not Linux: nothing is known about the processor
        return set()


def _gpu_capabilities():
    return [tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
            for gpu in tf.config.list_physical_devices("GPU")]


def unsupported(policy, strategy_name="default"):
    """Why `policy` cannot run well here, as one sentence; None when it can.

    mixed_float16 needs GPUs of compute capability 7.0 or more (TensorFlow's
    CPU float16 kernels are emulated); mixed_bfloat16 needs a TPU, GPUs of
    compute capability 8.0 or more, or a processor with bfloat16 instructions
    (avx512_bf16 or amx_bf16). float32 runs everywhere.

    Args:
        policy: one of `POLICIES` ("auto" always can: it picks what can).
        strategy_name: the resolved strategy ("tpu" runs bfloat16 natively).
    """
    if policy not in POLICIES:
        return f"unknown policy {policy!r}; choose one of: {', '.join(POLICIES)}"
    if policy in ("auto", "float32") or (policy == "mixed_bfloat16" and strategy_name == "tpu"):
        return None
    gpus = _gpu_capabilities()
    if policy == "mixed_float16":
        if gpus and min(gpus) >= (7, 0):
            return None
        return ("mixed_float16 needs GPUs of compute capability 7.0 or more, found "
                f"{', '.join('.'.join(map(str, c)) for c in gpus) or 'none'}; use mixed_bfloat16 or float32")
    if gpus:
        if min(gpus) >= (8, 0):
            return None
        return (f"mixed_bfloat16 needs GPUs of compute capability 8.0 or more, found "
                f"{', '.join('.'.join(map(str, c)) for c in gpus)}; use mixed_float16")
    if _cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        return None
    return (f"mixed_bfloat16 needs a processor with bfloat16 instructions (avx512_bf16 or amx_bf16); "
            f"this {os.uname().machine} one has none; use float32")


def resolve(policy, strategy_name="default", batchnorm_prior=False):
    """The Keras policy `policy` stands for: "auto" is mixed_bfloat16 where it runs well, else float32.

    "auto" also keeps float32 for a run whose generator follows the BatchNorm
    prior: over 3 seeds on a Conv-BN teacher, mixed_bfloat16 cost its student
    3.9 points at the best epoch and 7.0 at the last (README "Mixed precision").

    Args:
        policy: one of `POLICIES`.
        strategy_name: the resolved strategy ("tpu" runs bfloat16 natively).
        batchnorm_prior: whether the generator's objective has a BatchNorm term.

    Example:
    >>> resolve("auto")  # on a processor with avx512_bf16
    'mixed_bfloat16'
    >>> resolve("auto", batchnorm_prior=True)
    'float32'
    """
    if policy != "auto":
        return policy
    if batchnorm_prior or unsupported("mixed_bfloat16", strategy_name) is not None:
        return "float32"
    return "mixed_bfloat16"


def float32_copy(model):
    """`model` itself if every layer computes in float32, else a float32 copy with its weights.

    Mixed precision is for training: saved and exported models compute in
    float32 (the weights are float32 under a mixed policy anyway).

    Example:
    >>> float32_copy(distiller.student).save("student.keras")
    """
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):  # nested models count as layers
        return model

    def in_float32(layer):
        if isinstance(layer, keras.Model):
            return float32_copy(layer)
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=in_float32)
    copy.set_weights(model.get_weights())
    return copy
