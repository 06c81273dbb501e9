"""secure_agg.quantize.encode: integers on a unit step skip the stochastic rounding, same result."""

from __future__ import annotations

import numpy as np
import pytest

from secure_agg import SecAggParams, quantize


def _unit_step(n: int, bits: int = 16) -> SecAggParams:
    return SecAggParams(num_clients=10, vector_length=n, clip=float(1 << (bits - 1)),
                        quant_bits=bits, modulus_bits=32, max_weight=1)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16])
def test_integer_input_on_a_unit_step_encodes_as_the_float_path_does(dtype: type) -> None:
    p = _unit_step(5000)
    rng = np.random.default_rng(1)
    x = rng.integers(-40000, 40000, p.vector_length).astype(np.int64)  # some beyond the clip
    x = np.clip(x, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)
    want = quantize.encode(x.astype(np.float64), 1, p, np.random.default_rng(2))
    got = quantize.encode(x, 1, p, np.random.default_rng(2))
    assert got.dtype == want.dtype and np.array_equal(got, want)
    vec, w = quantize.decode_sum(got, p)
    assert w == 1.0
    assert np.array_equal(vec, np.clip(x, -p.clip, p.clip).astype(np.float64))


def test_integer_input_draws_no_randomness_but_floats_still_round_stochastically() -> None:
    p = _unit_step(1000)
    rng = np.random.default_rng(5)
    before = rng.bit_generator.state
    quantize.encode(np.arange(1000) - 500, 1, p, rng)
    assert rng.bit_generator.state == before
    half = np.full(1000, 0.5)
    ups = quantize.decode_sum(quantize.encode(half, 1, p, rng), p)[0]
    assert set(np.unique(ups)) == {0.0, 1.0}  # 0.5 rounds to 0 or 1, not always the same


def test_integer_input_off_a_unit_step_takes_the_rounding_path() -> None:
    p = SecAggParams(num_clients=10, vector_length=100, clip=1.0, quant_bits=16)
    got = quantize.encode(np.ones(100, dtype=np.int64), 1, p, np.random.default_rng(0))
    vec, _ = quantize.decode_sum(got, p)
    assert np.allclose(vec, 1.0, atol=p.step)
