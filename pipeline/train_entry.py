"""`llamafactory-cli train`, with the output layer run only where the loss is: `python -m pipeline.train_entry RUN.yaml`.

In supervised fine-tuning only the answer tokens carry loss, yet a causal LM applies its output layer (hidden size ×
vocabulary) at every prompt position too. On Gemma 3 270M (262k vocabulary) that layer is ~60% of a forward's FLOPs;
on SmolLM2-135M ~20%. `AnswerLogits` asks the model for logits only at the positions whose next token is labelled
(transformers' `logits_to_keep`, given the union of those positions over the batch) and computes the same loss the
model would: the shifted cross-entropy, summed over labelled tokens and divided by the Trainer's `num_items_in_batch`
(or their count). The loss and every gradient equal the full computation's (tests/test_train_entry.py).

It leaves the model alone where it cannot keep that promise: a model whose forward has no `logits_to_keep`, a batch
without labels (LLaMA-Factory's DFT/ASFT/EAFT losses and label smoothing take the labels out and need all logits),
and `shift_labels` given by the caller. `LLMCOMP_ALL_LOGITS=1` turns it off.

`SecretArguments` keeps hub tokens out of the run folder: the Trainer pickles its arguments into training_args.bin
(beside the adapter and in every checkpoint), so their secret fields are blanked once it is built; a blanked
`hub_token` moves to HF_TOKEN in this process's environment, where huggingface_hub finds it for a push.

Distributed runs (FORCE_TORCHRUN, DeepSpeed, several GPUs) go through LLaMA-Factory's own launcher, pointed at this
module (`torchrun … -m pipeline.train_entry RUN.yaml`), so each torchrun worker trains with the callback too.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
from transformers import TrainerCallback

OFF = "LLMCOMP_ALL_LOGITS"


def answer_logits_forward(model: torch.nn.Module) -> Any:
    """A forward for `model` (a transformers *ForCausalLM) that computes logits only where a label follows."""
    original = model.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        labels = kwargs.get("labels")
        if labels is None or "shift_labels" in kwargs or labels.dim() != 2 or kwargs.get("logits_to_keep"):
            return original(*args, **kwargs)
        kwargs.pop("labels")
        num_items = kwargs.pop("num_items_in_batch", None)
        targets = labels[:, 1:]  # position t predicts token t + 1
        keep = (targets != -100).any(dim=0).nonzero().squeeze(1)
        if keep.numel() == 0:  # nothing labelled: one position keeps the graph; the loss is zero
            keep = torch.zeros(1, dtype=torch.long, device=labels.device)
        outputs = original(*args, logits_to_keep=keep, **kwargs)
        logits = outputs.logits.float()
        kept = targets[:, keep]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), kept.reshape(-1).to(logits.device), ignore_index=-100, reduction="sum"
        )
        if num_items is None:
            num_items = (kept != -100).sum().clamp(min=1)
        if torch.is_tensor(num_items):
            num_items = num_items.to(loss.device)
        # a new output rather than `outputs.loss = …`: a ModelOutput's None fields are not among its keys, so the
        # attribute alone would be missed by the Trainer's outputs["loss"]
        return type(outputs)(**{**outputs, "loss": loss / num_items})

    return forward


def supports_logits_to_keep(model: torch.nn.Module) -> bool:
    import inspect

    return "logits_to_keep" in inspect.signature(model.forward).parameters


class AnswerLogits(TrainerCallback):
    """Installs `answer_logits_forward` on the causal LM under any PEFT wrapper when training begins."""

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is None or os.environ.get(OFF) == "1":
            return
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        if not supports_logits_to_keep(base):
            print(f"[train] {type(base).__name__} has no logits_to_keep: logits at every position", flush=True)
            return
        if getattr(base, "_answer_logits", False):
            return
        base.forward, base._answer_logits = answer_logits_forward(base), True  # an instance attribute: PEFT's
        # LoraModel calls `self.model.forward(...)` directly, so a forward hook on the module would be skipped
        if state.is_world_process_zero:
            print(
                "[train] output layer only where the loss is (answer positions); LLMCOMP_ALL_LOGITS=1: all", flush=True
            )


class SecretArguments(TrainerCallback):
    """Blanks every secret-named field of the TrainingArguments (hub_token, ...) before the first save pickles them."""

    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import dataclasses

        from pipeline.manifest import is_secret

        for field in dataclasses.fields(args):
            value = getattr(args, field.name, None)
            if is_secret(field.name) and isinstance(value, str) and value:
                if field.name == "hub_token":
                    os.environ["HF_TOKEN"] = value  # what huggingface_hub reads when the token argument is None
                setattr(args, field.name, None)


def distributed() -> bool:
    """LLaMA-Factory's launcher's own test for a torchrun launch, in the parent (not in a torchrun worker)."""
    from llamafactory.extras.misc import get_device_count, is_env_enabled, use_kt, use_ray

    if "LOCAL_RANK" in os.environ:
        return False
    return (
        is_env_enabled("USE_MCA")
        or is_env_enabled("FORCE_TORCHRUN")
        or (get_device_count() > 1 and not use_ray() and not use_kt())
    )


def main(argv: list[str]) -> int:
    if distributed():
        from llamafactory import launcher

        # its torchrun command is "torchrun … {__file__} {args}", split on spaces: each worker comes back to main()
        launcher.__file__ = "-m pipeline.train_entry"
        sys.argv = ["llamafactory-cli", "train", *argv]
        launcher.launch()
        return 0
    from llamafactory.train.tuner import run_exp

    sys.argv = [sys.argv[0], *argv]
    run_exp(callbacks=[AnswerLogits(), SecretArguments()])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
