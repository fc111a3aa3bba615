"""Label scoring: rank each row's candidate labels by their log-likelihood after exactly the prompt LoRA trained on.

    python -m pipeline.label_scoring --model smollm2 --task cola [--split test|dev] [--batch-size 16] [--calibrate]
                               [--labels a,b,c] [key=value ...]

writes predictions/TASK/MODEL_score.csv (`id,prediction,prob_<label>...[,group]`, softmax over the row's candidates)
and saves/TASK/MODEL/score/report.json (the LLaMA-Factory arguments, timings, calibration, metrics when the split
has labels). No generation: one forward pass per batch, nothing left unparsed.

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

`--calibrate` fits one bias per label (per candidate set: per judging dimension, per option count) on a seeded slice
of the TRAIN records (or of `--calibrate-on DATASET`, a held-out part of train) so that the labels' predicted
frequencies match that data's label prior; it never looks at the rows being scored. It fixes the class-imbalance
collapse (every row scored "1") while keeping the ranking. The calibrated predictions go to MODEL_score.csv; the raw ones
to saves/TASK/MODEL/score/MODEL_raw.csv (outside predictions/, so a vote does not count the model twice); both are
in the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adapters import find_task
from core import InputError, positive_int
from core.fileio import atomic_write_csv, atomic_write_json
from core.paths import DATA_DIR, STAGE_DIRS, predictions_csv
from core.records import load_dataset
from core.tasks import TaskSpec, labels_task
from pipeline.runs import RunError, parse_overrides, resolve_config, task_model

MIN_PREFIX = 4  # shorter common prefixes are not worth a cache


# ---------------------------------------------------------------- labels


def scoring_task(task: str, labels: str | None = None, data_dir: str | Path = "data") -> TaskSpec:
    """The task whose labels are scored: `--labels a,b,c`, else the dataset's recorded task (or a task name)."""
    if labels:
        return labels_task(labels)
    spec = find_task(task, data_dir)
    if spec.free_text:
        raise RunError(
            f"task {spec.name} ({task}) has free-text answers: label scoring needs a label set; "
            "give --labels a,b,c or predict by generation"
        )
    return spec


def label_sets(records: Sequence[dict], task: TaskSpec, where: str) -> list[tuple[str, ...]]:
    """Candidates per record; a labelled record whose output is not among its candidates is an error."""
    sets = [task.candidates(r) for r in records]
    for index, (record, labels) in enumerate(zip(records, sets, strict=True)):
        output = str(record.get("output", "")).strip()
        if output and output not in labels:
            raise RunError(
                f"{where} record {index} id {record.get('id')}: output is {output!r}, not one of the "
                f"candidates {', '.join(labels)}; give --labels a,b,c"
            )
    return sets


# ---------------------------------------------------------------- records and arguments


def infer_arguments(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved preset reduced to the keys LLaMA-Factory's inference parser knows; dtype as the predict run's."""
    from llamafactory.hparams import DataArguments, FinetuningArguments, GeneratingArguments, ModelArguments

    known = {
        f.name
        for cls in (ModelArguments, DataArguments, FinetuningArguments, GeneratingArguments)
        for f in dataclasses.fields(cls)
    }
    args = {key: value for key, value in config.items() if key in known}
    if "infer_dtype" not in config:
        args["infer_dtype"] = "bfloat16" if config.get("bf16") else "float16" if config.get("fp16") else "float32"
    if args.get("adapter_name_or_path") in ("", None):
        args.pop("adapter_name_or_path", None)  # `adapter_name_or_path=` scores the base model
    elif not Path(str(args["adapter_name_or_path"]).split(",")[0]).is_dir():
        raise RunError(
            f"no adapter at {args['adapter_name_or_path']}: train first (make train), or give "
            "adapter_name_or_path=PATH (or an empty value for the base model)"
        )
    return args


def load_records(config: dict[str, Any], name: str) -> tuple[list[dict], Any]:
    """(records, DatasetAttr) of a registered dataset in the config's dataset_dir."""
    try:
        return load_dataset(name, config.get("dataset_dir", DATA_DIR))
    except InputError as err:
        raise RunError(str(err)) from None


# ---------------------------------------------------------------- encoding


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


# ---------------------------------------------------------------- scoring


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
    return scores


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


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------- calibration


def fit_label_bias(scores: np.ndarray, prior: np.ndarray, rounds: int = 50) -> np.ndarray:
    """Per-label biases b such that argmax(scores + b) predicts each label about prior × n times.

    Coordinate updates: for one label, the rows it wins are those whose margin over the best other label exceeds
    -b; b is set between the margins that give the target count. Exact in one step for two labels; a few rounds
    for more. Returns the biases (mean 0) with the smallest count error seen.
    """
    n, k = scores.shape
    target = np.asarray(prior, dtype=float) / np.sum(prior) * n
    bias = np.zeros(k)
    best, best_error = bias.copy(), np.inf
    for _ in range(rounds):
        for label in range(k):
            shifted = scores + bias
            others = np.delete(shifted, label, axis=1).max(axis=1)
            margins = np.sort(scores[:, label] - others)[::-1]  # row wins label iff margin + b > 0
            t = int(round(target[label]))
            if t <= 0:
                bias[label] = -margins[0] - 1.0
            elif t >= n:
                bias[label] = -margins[-1] + 1.0
            else:
                bias[label] = -(margins[t - 1] + margins[t]) / 2
        bias -= bias.mean()
        counts = np.bincount((scores + bias).argmax(axis=1), minlength=k)
        error = np.abs(counts - target).sum()
        if error < best_error - 1e-9:
            best, best_error = bias.copy(), error
        if error < 1:
            break
    return best


def label_prior(records: Sequence[dict], labels: tuple[str, ...]) -> np.ndarray:
    """Frequency of each label among the records' outputs (add-one smoothed)."""
    counts = Counter(str(r.get("output", "")).strip() for r in records)
    return np.array([counts[label] + 1.0 for label in labels]) / (sum(counts[lb] for lb in labels) + len(labels))


def calibration_group(record: dict, labels: tuple[str, ...], task: TaskSpec) -> tuple[str, tuple[str, ...]]:
    """Rows share biases when they share a group (judge: dimension) and a candidate set (logic: the option count)."""
    return str(task.group_of(record) or ""), tuple(labels)


def fit_calibration(
    train: Sequence[dict],
    train_sets: Sequence[tuple[str, ...]],
    slice_idx: Sequence[int],
    slice_scores: Sequence[np.ndarray],
    task: TaskSpec,
    min_rows: int = 8,
) -> dict[tuple, dict]:
    """{group: {group, labels, prior, bias, rows}}: the prior over all train records of the group, the biases
    from its scored slice rows; a group with fewer than `min_rows` scored rows keeps bias 0."""
    groups = [calibration_group(r, s, task) for r, s in zip(train, train_sets, strict=True)]
    out = {}
    for group in dict.fromkeys(groups):
        labels = group[1]
        prior = label_prior([r for r, g in zip(train, groups, strict=True) if g == group], labels)
        rows = [s for i, s in zip(slice_idx, slice_scores, strict=True) if groups[i] == group]
        logp = np.log(np.stack([softmax(s) for s in rows])) if rows else np.zeros((0, len(labels)))
        bias = fit_label_bias(logp, prior) if len(rows) >= min_rows else np.zeros(len(labels))
        out[group] = {
            "group": group[0],
            "labels": list(labels),
            "prior": prior.round(4).tolist(),
            "bias": bias.round(4).tolist(),
            "rows": len(rows),
        }
    return out


def apply_calibration(
    records: Sequence[dict],
    scores: Sequence[np.ndarray],
    sets: Sequence[tuple[str, ...]],
    calibration: dict,
    task: TaskSpec,
) -> list[np.ndarray]:
    """Log-probabilities over the candidates plus the group's biases (none for a group calibration did not see)."""
    out = []
    for record, s, labels in zip(records, scores, sets, strict=True):
        fitted = calibration.get(calibration_group(record, labels, task))
        bias = np.asarray(fitted["bias"]) if fitted else np.zeros(len(labels))
        out.append(np.log(softmax(s)) + bias)
    return out


# ---------------------------------------------------------------- output


def prediction_rows(
    records: Sequence[dict], sets: Sequence[tuple[str, ...]], scores: Sequence[np.ndarray], task: TaskSpec
) -> list[dict]:
    """{id, prediction, prob_<label> for every label of the task (0 where not a candidate)[, the task's group]}."""
    all_labels = sorted({label for labels in sets for label in labels}, key=lambda x: (len(x), x))  # as baseline
    rows = []
    for record, labels, s in zip(records, sets, scores, strict=True):
        probs = dict(zip(labels, softmax(np.asarray(s, dtype=float)), strict=True))
        row = {"id": record["id"], "prediction": labels[int(np.argmax(s))]}
        row.update({f"prob_{label}": round(float(probs.get(label, 0.0)), 6) for label in all_labels})
        if task.group_col and task.group_col in record:
            row[task.group_col] = record[task.group_col]
        rows.append(row)
    return rows


def metrics(records: Sequence[dict], rows: Sequence[dict]) -> dict | None:
    """Accuracy, MCC etc. (core.metrics) where every scored record has a gold output."""
    from core.metrics import label_metrics

    gold = [str(r.get("output", "")).strip() for r in records]
    if not gold or not all(gold):
        return None
    result = label_metrics(gold, [row["prediction"] for row in rows])
    return {
        key: result[key] for key in ("n", "accuracy", "mcc", "macro_f1", "mae", "labels", "confusion") if key in result
    }


# ---------------------------------------------------------------- CLI


def local_scores(
    scorer: LabelScorer, records: Sequence[dict], encoded: Sequence[Encoded], batch_size: int, kind: str
) -> list[np.ndarray]:
    """Every row's scores in this one process; `kind` ("rows" or "calibration") is for pipeline.sharded_scoring."""
    return score_encoded(scorer.model, encoded, batch_size, scorer.pad_id)


def run(args: argparse.Namespace, scores_of: Any = local_scores, write: bool = True) -> dict:
    """Score, calibrate, write. `scores_of` (local_scores' signature) and `write=False` are the hooks
    pipeline.sharded_scoring runs every rank through; its extra report keys arrive in `report["shards"]`."""
    config = resolve_config(
        args.model, "predict", args.task, parse_overrides(args.overrides), split=args.split, data_dir=args.data_dir
    )
    try:
        rules = scoring_task(args.task, args.labels, config["dataset_dir"])
    except InputError as err:
        raise RunError(str(err)) from None
    name = config["eval_dataset"]
    records, attr = load_records(config, name)
    records = records[: args.limit]  # LIMIT=N: the first N rows, a trial run
    sets = label_sets(records, rules, name)
    infer_args = infer_arguments(config)

    start = time.perf_counter()
    scorer = LabelScorer(infer_args)
    loaded = time.perf_counter()
    encoded = scorer.encode(records, sets, attr)
    scores = scores_of(scorer, records, encoded, args.batch_size, "rows")
    seconds = time.perf_counter() - loaded
    raw_rows = prediction_rows(records, sets, scores, rules)
    report: dict[str, Any] = {
        "model": args.model,
        "task": args.task,
        "dataset": name,
        "rows": len(records),
        "limit": args.limit,
        "batch_size": args.batch_size,
        "prompt_tokens_per_row": round(float(np.mean([len(e.prompt) for e in encoded])), 1),
        "load_seconds": round(loaded - start, 2),
        "score_seconds": round(seconds, 2),
        "rows_per_second": round(len(records) / seconds, 2),
        "infer_args": infer_args,
        "raw": {
            "metrics": metrics(records, raw_rows),
            "predicted": dict(Counter(row["prediction"] for row in raw_rows)),
        },
    }
    out = Path(args.out) if args.out else predictions_csv(args.task, args.model, "score")
    score_dir = Path(config["output_dir"]).with_name(STAGE_DIRS["score"])  # beside predict/, overrides followed
    rows = raw_rows
    if args.calibrate:
        train_name = args.calibrate_on or f"{args.task}_train"
        train, train_attr = load_records(config, train_name)
        train_sets = label_sets(train, rules, train_name)
        rng = np.random.default_rng(args.seed)
        picked = sorted(rng.choice(len(train), size=min(args.calibration_rows, len(train)), replace=False).tolist())
        slice_records = [train[i] for i in picked]
        train_scores = scores_of(
            scorer,
            slice_records,
            scorer.encode(slice_records, [train_sets[i] for i in picked], train_attr),
            args.batch_size,
            "calibration",
        )
        calibration = fit_calibration(train, train_sets, picked, train_scores, rules)
        rows = prediction_rows(records, sets, apply_calibration(records, scores, sets, calibration, rules), rules)
        raw_out = score_dir / f"{args.model}_raw.csv"
        if write:
            atomic_write_csv(raw_out, list(raw_rows))
        report.update(
            raw_predictions=str(raw_out),
            calibration={
                "fitted_on": f"{train_name}: {len(picked)} of {len(train)} records (seed {args.seed})",
                "sets": list(calibration.values()),
            },
        )
        report["calibrated"] = {
            "metrics": metrics(records, rows),
            "predicted": dict(Counter(row["prediction"] for row in rows)),
        }
    report["predictions"] = str(out)
    report.update(getattr(scores_of, "report", {}))
    if write:
        atomic_write_csv(out, list(rows))
        atomic_write_json(score_dir / "report.json", report)
    return report


def summary(report: dict) -> str:
    limited = f" (LIMIT={report['limit']}: the first rows only, a trial run)" if report.get("limit") else ""
    lines = [
        f"[score] {report['rows']} rows of {report['dataset']}{limited} in {report['score_seconds']} s "
        f"({report['rows_per_second']} rows/s, {report['prompt_tokens_per_row']} prompt tokens/row) "
        f"→ {report['predictions']}"
    ]
    for kind in ("raw", "calibrated"):
        if kind in report:
            m = report[kind]["metrics"]
            score = f"accuracy {m['accuracy']:.3f}, MCC {m['mcc']:.3f}; " if m else ""
            lines.append(f"[score] {kind}: {score}predicted {report[kind]['predicted']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.label_scoring",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        help="a factory_configs/ preset (default: the task's embedded CPU model, core/tasks.py EMBEDDED_MODEL)",
    )
    parser.add_argument("--task", default="judge_demo")
    parser.add_argument("--split", default="test", help="score TASK_<split> (default test)")
    parser.add_argument("--data-dir", help="the datasets' folder, LLaMA-Factory's dataset_dir (default data)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--labels", help="candidate labels for every row, comma-separated (default: the task's)")
    parser.add_argument("--calibrate", action="store_true", help="fit per-label biases on a TASK_train slice")
    parser.add_argument(
        "--calibrate-on",
        metavar="DATASET",
        help="calibrate on this registered dataset instead of TASK_train (a held-out train slice)",
    )
    parser.add_argument("--calibration-rows", type=int, default=512, help="train records scored to calibrate (512)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration slice")
    parser.add_argument("--out", help="default predictions/TASK/MODEL_score.csv")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="score the first N rows only (a trial run)")
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="processes (GPUs) per node: torchrun ranks score length-balanced shards, rank 0 merges "
        "(pipeline/sharded_scoring.py; NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT as for train)",
    )
    parser.add_argument("overrides", nargs="*", help="LLaMA-Factory key=value overrides of the predict preset")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_intermixed_args(argv)
    args.model = task_model(args.model, args.task, args.data_dir)
    try:
        if args.nproc > 1 or int(os.environ.get("NNODES", "1")) > 1:
            from pipeline.sharded_scoring import launch

            report = launch(argv, args.nproc)
        else:
            report = run(args)
    except RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
