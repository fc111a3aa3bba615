"""The label-scoring engine: LLaMA-Factory's tokenizer, template and model, and the batched teacher-forced
log-likelihood of each row's candidate labels.

Everything LLaMA-Factory decides is LLaMA-Factory's code: the arguments (`get_infer_args` on the same resolved
predict preset `python -m pipeline predict` runs), tokenizer and model with the adapter merged (`load_tokenizer`,
`load_model`), the alpaca record → messages conversion (`get_dataset_converter`), the chat template
(`get_template_and_fix_tokenizer`, `Template.encode_oneturn`) and the prompt truncation (`infer_seqlen`).

A label's score is the sum of its tokens' log-probabilities (teacher forcing), label tokens only: the template's
end-of-turn tokens are left out, because they are common to every candidate and would only add noise. They are put
back when the candidates' token sequences are not prefix-free ("1" and "10"), where leaving them out would make the
shorter label always win. Single-token label sets (digits, letters) take the fast path: one forward pass per batch
(rows sorted by prompt length) over the left-padded prompts with `logits_to_keep=1`; the batch's common prefix (the
template head and a fixed instruction) runs once and its KV cache is expanded to the batch. Longer labels reuse the
prompt pass's KV cache: it is expanded to one row per (row, candidate) and only the candidates' tokens are run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from pipeline.errors import RunError

MIN_PREFIX = 4  # shorter common prefixes are not worth a cache


@dataclasses.dataclass
class Encoded:
    """One row: its (truncated) prompt ids and, per candidate label, the token ids to score after it."""

    prompt: list[int]
    labels: tuple[str, ...]
    targets: list[list[int]]


class LabelScorer:
    """LLaMA-Factory's tokenizer, template and model (adapter merged) for one resolved predict config."""

    def __init__(self, args: dict[str, Any]):
        from llamafactory.data import get_template_and_fix_tokenizer
        from llamafactory.hparams import get_infer_args
        from llamafactory.model import load_model, load_tokenizer

        self.args = dict(args)
        self.model_args, self.data_args, self.finetuning_args, _ = get_infer_args(dict(args))
        self.tokenizer = load_tokenizer(self.model_args)["tokenizer"]
        self.template = get_template_and_fix_tokenizer(self.tokenizer, self.data_args)
        self.model = load_model(self.tokenizer, self.model_args, self.finetuning_args, is_trainable=False)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._responses: dict[str, list[int]] = {}

    def messages(self, record: dict, attr: Any = None) -> dict[str, Any]:
        """LLaMA-Factory's alpaca converter on one record: {_prompt, _response, _system, _tools, ...}.

        `attr` is the dataset's DatasetAttr (core.records.dataset_attr): its columns say where system/history are.
        """
        from llamafactory.data.converter import get_dataset_converter
        from llamafactory.data.parser import DatasetAttr

        return get_dataset_converter("alpaca", attr or DatasetAttr("file", dataset_name="records"), self.data_args)(
            record
        )

    def _response_ids(self, prompt: list[dict], label: str, system: str | None, tools: str | None) -> list[int]:
        # The assistant turn is encoded on its own, so its ids depend on the label only.
        if label not in self._responses:
            _, response = self.template.encode_oneturn(
                self.tokenizer, prompt + [{"role": "assistant", "content": label}], system, tools
            )
            if self.template.efficient_eos:
                response = response + [self.tokenizer.eos_token_id]
            self._responses[label] = response
        return self._responses[label]

    def label_targets(
        self, labels: Sequence[str], prompt: list[dict], system: str | None, tools: str | None
    ) -> list[list[int]]:
        """Token ids to score per label: label tokens only, or with the end tokens where needed (module doc)."""
        full = [self._response_ids(prompt, label, system, tools) for label in labels]
        end = self._response_ids(prompt, "", system, tools)
        if end and all(ids[-len(end) :] == end and len(ids) > len(end) for ids in full):
            bare = [ids[: -len(end)] for ids in full]
            prefix_free = not any(i != j and a == b[: len(a)] for i, a in enumerate(bare) for j, b in enumerate(bare))
            if prefix_free:
                return bare
        if len({tuple(ids) for ids in full}) < len(full):
            raise RunError(f"labels {', '.join(labels)} encode to the same tokens")
        return full

    def encode(self, records: Sequence[dict], label_sets: Sequence[tuple[str, ...]], attr: Any = None) -> list[Encoded]:
        """Each record's prompt ids exactly as training built them, truncated the way training truncates."""
        from llamafactory.data.processor.processor_utils import infer_seqlen

        cutoff = self.data_args.cutoff_len - (1 if self.template.efficient_eos else 0)
        out = []
        for record, labels in zip(records, label_sets, strict=True):
            example = self.messages(record, attr)
            prompt, system, tools = example["_prompt"], example["_system"] or None, example["_tools"] or None
            prompt_ids, _ = self.template.encode_oneturn(
                self.tokenizer, prompt + [{"role": "assistant", "content": ""}], system, tools
            )
            targets = self.label_targets(labels, prompt, system, tools)
            source_len, _ = infer_seqlen(len(prompt_ids), max(map(len, targets)), cutoff)
            out.append(Encoded(prompt_ids[:source_len], tuple(labels), targets))
        return out


def _accepts(model: Any, name: str) -> bool:
    """Whether the model's own forward takes `name` (remote-code models may not take logits_to_keep)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return name in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def _left_pad(sequences: Sequence[Sequence[int]], pad_id: int, device) -> tuple[Any, Any, Any]:
    """(input_ids, attention_mask, position_ids), right-aligned so the last column is every row's last token."""
    import torch

    width = max(map(len, sequences))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def score_encoded(
    model: Any,
    encoded: Sequence[Encoded],
    batch_size: int = 16,
    pad_id: int = 0,
    share_prompt_cache: bool = True,
    share_prefix: bool = True,
    stats: dict | None = None,
) -> list[np.ndarray]:
    """Log-likelihood of every candidate of every row (in input order): batches of rows sorted by prompt length.

    `stats`, if given, gets `prompt_positions`: the prompt positions run through the model (padding included).
    """
    import torch

    if not encoded:
        return []
    device = next(model.parameters()).device
    keep = _accepts(model, "logits_to_keep")
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].prompt), reverse=True)
    scores: list[np.ndarray | None] = [None] * len(encoded)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = [encoded[i] for i in order[start : start + batch_size]]
            if share_prompt_cache or all(len(t) == 1 for row in rows for t in row.targets):
                batch_scores = _score_shared_prompt(model, rows, pad_id, device, keep, share_prefix, stats)
            else:
                batch_scores = _score_full_sequences(model, rows, pad_id, device, keep)
            for i, s in zip(order[start : start + batch_size], batch_scores, strict=True):
                scores[i] = s
    return cast(list[np.ndarray], scores)  # every index was in one batch: none is left None


def _logits(model: Any, keep_arg: bool, n_keep: int, **inputs) -> tuple[Any, Any]:
    if keep_arg:
        inputs["logits_to_keep"] = n_keep
    out = model(**inputs, return_dict=True)
    return out.logits[:, -n_keep:, :].float().log_softmax(-1), getattr(out, "past_key_values", None)


def common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix every sequence starts with (the template head and a fixed instruction)."""
    first, n = sequences[0], min(map(len, sequences))
    for i in range(n):
        if any(seq[i] != first[i] for seq in sequences):
            return i
    return n


def sliding_window(model: Any) -> int | None:
    """The window of the model's sliding-window layers (Gemma 3: 512 in 5 of every 6 layers), None without any."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if types is not None and not any(t in ("sliding_attention", "chunked_attention") for t in types):
        return None
    return window


def _prefix_cache(model, prefix: list[int], batch: int, device, keep: bool):
    """The prefix's KV cache, computed once and expanded to `batch` rows; None where the model has no Cache API."""
    import torch

    _, cache = _logits(model, keep, 1, input_ids=torch.tensor([prefix], device=device), use_cache=True)
    if not hasattr(cache, "reorder_cache"):
        return None
    cache.reorder_cache(torch.zeros(batch, dtype=torch.long, device=device))
    return cache


def _score_shared_prompt(
    model,
    rows: Sequence[Encoded],
    pad_id: int,
    device,
    keep: bool,
    share_prefix: bool = True,
    stats: dict | None = None,
) -> list[np.ndarray]:
    """One pass over the prompts (their common prefix once, on a cache expanded to the batch); a second over the
    candidates' later tokens on the prompt cache expanded to one row per (row, candidate)."""
    import torch

    prompts = [r.prompt for r in rows]
    window = sliding_window(model)
    if window is not None and max(map(len, prompts)) + max(len(t) for r in rows for t in r.targets) > window:
        # padding after a shared prefix would count in a sliding window (it is measured in cache positions) and
        # hide prefix tokens that a row's own window covers; left padding alone shifts every row's tokens alike
        share_prefix = False
    shared = min(common_prefix(prompts), min(map(len, prompts)) - 1) if share_prefix and len(rows) > 1 else 0
    past = _prefix_cache(model, prompts[0][:shared], len(rows), device, keep) if shared >= MIN_PREFIX else None
    shared = shared if past is not None else 0
    ids, suffix_mask, positions = _left_pad([p[shared:] for p in prompts], pad_id, device)
    if stats is not None:
        stats["prompt_positions"] = stats.get("prompt_positions", 0) + ids.numel() + shared
    # prefix, then left padding, then each row's own tokens: padding is masked and positions skip it
    mask = torch.cat([torch.ones((len(rows), shared), dtype=torch.long, device=device), suffix_mask], dim=-1)
    multi = [(r, k) for r, row in enumerate(rows) for k, t in enumerate(row.targets) if len(t) > 1]
    first, cache = _logits(
        model,
        keep,
        1,
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions + shared,
        past_key_values=past,
        use_cache=bool(multi) or past is not None,
    )
    first = first[:, 0, :]
    scores = [first[r, [t[0] for t in row.targets]].cpu().double().numpy() for r, row in enumerate(rows)]
    if not multi:
        return scores
    if not hasattr(cache, "reorder_cache"):  # a model with its own (legacy) cache: recompute the prompts
        return _score_full_sequences(model, rows, pad_id, device, keep)
    pair_rows = torch.tensor([r for r, _ in multi], device=device)
    cache.reorder_cache(pair_rows)  # index_select: one cache row per (row, candidate)
    inputs = [rows[r].targets[k][:-1] for r, k in multi]
    width = max(map(len, inputs))
    cont = torch.full((len(multi), width), pad_id, dtype=torch.long)
    cont_mask = torch.zeros((len(multi), width), dtype=torch.long)
    for j, seq in enumerate(inputs):  # right-padded: padding comes after every real token, so nothing sees it
        cont[j, : len(seq)] = torch.tensor(seq)
        cont_mask[j, : len(seq)] = 1
    lengths = mask.sum(-1)[pair_rows]
    cont_positions = lengths[:, None] + torch.arange(width, device=device)[None, :]
    logp, _ = _logits(
        model,
        False,
        width,
        input_ids=cont.to(device),
        past_key_values=cache,
        use_cache=True,
        attention_mask=torch.cat([mask[pair_rows], cont_mask.to(device)], dim=-1),
        position_ids=cont_positions,
    )
    for j, (r, k) in enumerate(multi):
        target = rows[r].targets[k]
        steps = logp[j, torch.arange(len(target) - 1, device=device), torch.tensor(target[1:], device=device)]
        scores[r][k] += float(steps.double().sum())
    return scores


def _score_full_sequences(model, rows: Sequence[Encoded], pad_id: int, device, keep: bool) -> list[np.ndarray]:
    """Teacher forcing without a cache: one left-padded sequence per (row, candidate), prompt included."""
    import torch

    pairs = [(r, k) for r, row in enumerate(rows) for k in range(len(row.targets))]
    sequences = [rows[r].prompt + rows[r].targets[k][:-1] for r, k in pairs]
    ids, mask, positions = _left_pad(sequences, pad_id, device)
    n_keep = max(len(rows[r].targets[k]) for r, k in pairs)
    logp, _ = _logits(model, keep, n_keep, input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)
    scores = [np.zeros(len(row.targets)) for row in rows]
    for j, (r, k) in enumerate(pairs):
        target = rows[r].targets[k]
        at = torch.arange(n_keep - len(target), n_keep, device=device)
        scores[r][k] = float(logp[j, at, torch.tensor(target, device=device)].double().sum())
    return scores
