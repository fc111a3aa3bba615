"""The answer-only output layer in training (pipeline/train_entry.py): same loss, same gradients, less work."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from pipeline.train_entry import AnswerLogits


def tiny(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    shape = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**shape, num_key_value_heads=2)).eval()
    config = Gemma2Config(
        **shape, num_key_value_heads=1, head_dim=8, sliding_window=4, final_logit_softcapping=30.0
    )  # softcapping is applied inside forward, to the kept logits too
    config._attn_implementation = "eager"
    return Gemma2ForCausalLM(config).eval()


def batch() -> dict[str, torch.Tensor]:
    """Two rows, right-padded, each with a prompt (-100) and an answer of a different length at a different place."""
    torch.manual_seed(1)
    ids = torch.randint(3, 300, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    labels = torch.full_like(ids, -100)
    labels[0, 8:12] = ids[0, 8:12]
    labels[1, 6:9] = ids[1, 6:9]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def lora_grads(kind: str, install: bool, num_items: torch.Tensor | None) -> tuple[float, dict[str, torch.Tensor]]:
    model = get_peft_model(tiny(kind), LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    model.train()
    if install:
        AnswerLogits().on_train_begin(
            TrainingArguments("unused", report_to=[]), TrainerState(), TrainerControl(), model
        )
    extra = {} if num_items is None else {"num_items_in_batch": num_items}
    outputs = model(**batch(), **extra)
    loss = outputs["loss"]  # how the Trainer reads it
    assert outputs[0] is loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("kind", ["llama", "gemma2"])
@pytest.mark.parametrize("num_items", [None, torch.tensor(11)])
def test_same_loss_and_lora_gradients_as_all_logits(kind: str, num_items: torch.Tensor | None) -> None:
    full_loss, full = lora_grads(kind, install=False, num_items=num_items)
    loss, grads = lora_grads(kind, install=True, num_items=num_items)
    assert loss == pytest.approx(full_loss, rel=1e-5)
    assert full.keys() == grads.keys() and len(grads) > 8
    for name, grad in grads.items():
        assert torch.allclose(grad, full[name], atol=1e-6, rtol=1e-4), name


def test_only_answer_positions_reach_the_output_layer() -> None:
    model = get_peft_model(tiny("llama"), LoraConfig(r=4, target_modules=["q_proj"]))
    AnswerLogits().on_train_begin(TrainingArguments("unused", report_to=[]), TrainerState(), TrainerControl(), model)
    AnswerLogits().on_train_begin(TrainingArguments("unused", report_to=[]), TrainerState(), TrainerControl(), model)
    seen: list[int] = []
    model.get_base_model().lm_head.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[1]))
    out = model(**batch())
    # positions whose next token is labelled: row 0 → 7..10, row 1 → 5..7; the union is 5..10 (6 of 12)
    assert seen == [6] and out.logits.shape[1] == 6
    seen.clear()
    without_labels = {k: v for k, v in batch().items() if k != "labels"}
    assert model(**without_labels).logits.shape[1] == 12 and seen == [12]  # generation and scoring: untouched
