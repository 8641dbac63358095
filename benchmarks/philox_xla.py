"""TensorFlow's stateless uniform draw, rewritten in plain ops for XLA.

A probe for the SET update's floor: SET's masks depend on one
`tf.random.stateless_uniform` number per position (Philox-4x32-10, as
TensorFlow's kernel computes it), so a faster draw must give the same
bits. This module computes those bits from the counter and key, position
by position, so that XLA could fuse the draw into the pass that reads it.
`uniform_at` equals `tf.random.stateless_uniform` bit for bit (tested);
`mantissa_lanes` is the compute-only floor (each 4-number block once,
outputs not interleaved).
"""

import tensorflow as tf

__all__ = ["mantissa_lanes", "uniform_at"]

_M = (0xD2511F53, 0xCD9E8D57)  # Philox-4x32 multipliers
_W = (0x9E3779B9, 0xBB67AE85)  # key increments
_SCRAMBLE = (0x3EC8F720, 0x02461E29)  # TensorFlow's fixed key that mixes the seed


def _mul_hi_lo(a, m):
    product = tf.cast(a, tf.uint64) * tf.constant(m, tf.uint64)
    return (tf.cast(tf.bitwise.right_shift(product, tf.constant(32, tf.uint64)), tf.uint32),
            tf.cast(product, tf.uint32))


def _philox(c0, c1, c2, c3, k0, k1):
    xor = tf.bitwise.bitwise_xor
    for _ in range(10):
        hi0, lo0 = _mul_hi_lo(c0, _M[0])
        hi1, lo1 = _mul_hi_lo(c2, _M[1])
        c0, c1, c2, c3 = xor(xor(hi1, c1), k0), lo1, xor(xor(hi0, c3), k1), lo0
        k0 = k0 + tf.constant(_W[0], tf.uint32)
        k1 = k1 + tf.constant(_W[1], tf.uint32)
    return c0, c1, c2, c3


def _key_and_counter(seed):
    """TensorFlow's key and high counter words for an int64 `[2]` seed."""
    words = tf.bitcast(tf.cast(seed, tf.int64), tf.uint32)  # [[lo, hi], [lo, hi]]
    mixed = _philox(words[0, 0], words[0, 1], words[1, 0], words[1, 1],
                    tf.constant(_SCRAMBLE[0], tf.uint32), tf.constant(_SCRAMBLE[1], tf.uint32))
    return mixed  # key0, key1, counter word 2, counter word 3


def _to_unit(bits):
    one_exponent = tf.constant(0x3F800000, tf.uint32)
    mantissa = tf.bitwise.bitwise_and(bits, tf.constant(0x7FFFFF, tf.uint32))
    return tf.bitcast(tf.bitwise.bitwise_or(mantissa, one_exponent), tf.float32) - 1.0


def uniform_at(positions, seed):
    """`tf.random.stateless_uniform(shape, seed)` at flat `positions` (float32).

    Element `i` is word `i % 4` of the Philox block with counter `i // 4`.

    Example:

    ```python
    seed = tf.constant([3, 100], tf.int64)
    uniform_at(tf.range(4, dtype=tf.int64), seed)  # == stateless_uniform([4], seed)
    ```
    """
    k0, k1, c2, c3 = _key_and_counter(seed)
    positions = tf.cast(positions, tf.int64)
    block = tf.cast(positions // 4, tf.uint32)
    lane = positions % 4
    zeros = tf.zeros_like(block)
    w = _philox(block, zeros, zeros + c2, zeros + c3, k0, k1)
    bits = tf.where(lane == 0, w[0], tf.where(lane == 1, w[1], tf.where(lane == 2, w[2], w[3])))
    return _to_unit(bits)


def mantissa_lanes(size, seed):
    """The Philox words of `size` numbers, each 4-number block computed
    once, as 4 lane vectors (not in position order: a compute floor)."""
    k0, k1, c2, c3 = _key_and_counter(seed)
    block = tf.cast(tf.range((size + 3) // 4, dtype=tf.int32), tf.uint32)
    zeros = tf.zeros_like(block)
    return tuple(_to_unit(w) for w in _philox(block, zeros, zeros + c2, zeros + c3, k0, k1))
