"""Label scoring on Gemma 3's hybrid cache (sliding-window layers beside full-attention ones) equals a naive forward.

A tiny random Gemma3ForCausalLM with a 4-token sliding window: prompts run past the window, share a prefix, are
padded to each other, and the candidates span several tokens, so every fast path (the prefix cache expanded to the
batch, left padding, the cache reordered to one row per candidate) meets the sliding layers.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from pipeline.scoring_engine import Encoded, score_encoded

WINDOW = 4


@pytest.fixture(scope="module")
def tiny_gemma3():
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=WINDOW,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=1,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    return Gemma3ForCausalLM(config).eval()


def naive(model, prompt: list[int], target: list[int]) -> float:
    """One unpadded sequence, full logits, no cache."""
    import torch

    with torch.inference_mode():
        logp = model(input_ids=torch.tensor([prompt + target]), use_cache=False).logits[0].float().log_softmax(-1)
    return float(sum(logp[len(prompt) - 1 + j, token] for j, token in enumerate(target)))


def rows(seed: int, n: int, prefix_len: int, targets: list[list[int]]) -> list[Encoded]:
    rng = random.Random(seed)
    prefix = [2] + [rng.randrange(3, 96) for _ in range(prefix_len - 1)]
    return [
        Encoded(
            prefix + [rng.randrange(3, 96) for _ in range(rng.randint(1, 3 * WINDOW))],
            tuple(str(k) for k in range(len(targets))),
            targets,
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("targets", [[[5], [6], [7]], [[5, 9], [6], [7, 8, 10]]], ids=["single", "multi"])
@pytest.mark.parametrize("prefix_len", [2, 6], ids=["no-shared-prefix", "shared-prefix"])
def test_hybrid_cache_scores_equal_naive_forward(tiny_gemma3, targets, prefix_len):
    encoded = rows(0, 7, prefix_len, targets)
    assert max(len(e.prompt) for e in encoded) > 2 * WINDOW  # past the window, padded against short rows
    expected = [[naive(tiny_gemma3, e.prompt, t) for t in e.targets] for e in encoded]
    for kwargs in ({}, {"share_prefix": False}, {"share_prompt_cache": False}):
        scores = score_encoded(tiny_gemma3, encoded, batch_size=4, pad_id=0, **kwargs)
        np.testing.assert_allclose(np.stack(scores), np.array(expected), rtol=1e-4, atol=1e-4, err_msg=str(kwargs))
