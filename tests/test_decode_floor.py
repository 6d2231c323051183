"""What each architecture says a decoded byte reads of its weights (the benchmark's bandwidth floor),
against a count by hand of the tiny presets' layers."""

import mlx.core as mx
import pytest

from mlx_megabyte.models import architecture, build
from mlx_megabyte.models.base import weight_bytes
from mlx_megabyte.weights import quantize


def block(d: int, inner: int, ff: int) -> int:
    """Floats of one pre-norm attention + feed-forward block: two norms, q, kv, out, up (+ bias), down (+ bias)."""
    return 2 * d + d * inner + 2 * d * inner + inner * d + d * ff * d + ff * d + ff * d * d + d


def test_megabyte_tiny_reads_its_local_model_per_byte_and_its_global_model_per_patch():
    c = architecture("megabyte").presets["tiny"]  # dim (64, 32), depth (2, 2), max_seq_len (32, 8), 4 heads of 16
    inner, P, V = 64, 8, 256
    local = 32 + 2 * block(32, inner, 4) + 32  # an embedding row, the blocks, the final norm
    patch_embedding = P * 32 + 2 * P * 32 + P * 32 * 64 + 64 + 2 * 64  # P rows, norm_in, proj, norm_out
    to_next = 64 * 8 * 32 + 8 * 32
    global_ = 2 * block(64, inner, 4) + 64 + patch_embedding + to_next
    expected = 4 * (local + global_ / P + 32 * V + V)
    model = build(c)
    # The patch embedding's table is looked up P times per patch; the count reads one row of every table.
    assert model.weight_bytes_per_byte() == pytest.approx(expected - 4 * (P - 1) * 32 / P)


def test_spacebyte_and_hnet_tiny_read_the_global_part_at_its_rate():
    s = architecture("spacebyte").presets["tiny"]  # local 2 x 32, global 2 x 64, context 256, 64 global slots
    local = 32 + 2 * block(32, 32, 4) + 32 + 32 * 256 + 256
    glob = 2 * block(64, 64, 4)
    assert build(s).weight_bytes_per_byte() == pytest.approx(4 * (local + glob * 64 / 256))
    h = architecture("hnet").presets["tiny"]  # dim 32, main 64 x 2, encoder 1, decoder 1 attention blocks
    per_byte = 32 + (block(32, 32, 4) + 32) * 2 + 2 * 32 * 32 + 32 * 32 + 32 * 256 + 256
    main = 2 * block(64, 64, 4) + 64
    assert build(h).weight_bytes_per_byte() == pytest.approx(4 * (per_byte + main / h.target_patch))


def test_quantized_weights_are_counted_at_their_packed_size():
    model = build(architecture("spacebyte").presets["tiny"])
    full = weight_bytes(model.global_blocks[0].feed_forward.up)
    quantize(model, 8)
    mx.eval(model.parameters())
    packed = weight_bytes(model.global_blocks[0].feed_forward.up)  # 64 -> 256: int8 plus scales and biases
    assert packed == pytest.approx(256 * 64 + 256 * 2 * 4 + 256 * 4)
    assert packed < full / 3
