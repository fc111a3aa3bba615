"""The conversion report: label counts, duplicates, train/test overlap and token lengths against cutoff_len.

`--fit-cutoff` (`fit_inputs`) lives here too: it uses the same tokenizer and template overhead as the length check.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from adapters.readers import READ_NOTE_KEYS, AdapterError
from adapters.records import Part, text_key


def _duplicates(part: Part) -> dict[str, Any]:
    ids = [record["id"] for record in part.records]
    dup_ids = [] if len(set(ids)) == len(ids) else [key for key, count in Counter(ids).items() if count > 1]
    first: dict[tuple[str, ...], dict[str, Any]] = {}
    setdefault = first.setdefault
    dup_texts = conflicting = 0
    examples: list[list[str]] = []
    for key, record in zip(map(text_key(part.records), part.records), part.records, strict=True):
        seen = setdefault(key, record)
        if seen is record:
            continue
        dup_texts += 1
        if seen["output"] != record["output"]:
            conflicting += 1
        if len(examples) < 5:
            examples.append([seen["id"], record["id"]])
    return {
        "duplicate_ids": {"count": len(dup_ids), "examples": dup_ids[:5]},
        "duplicate_texts": {"count": dup_texts, "conflicting_outputs": conflicting, "examples": examples},
    }


def _overlap(parts: list[Part], name: str) -> dict[str, Any]:
    """Dev/test records whose text also appears in the train set of the same subset."""
    result = {}
    trains = {part.subset: part for part in parts if part.split == "train"}
    for part in parts:
        train = trains.get(part.subset)
        if part.split == "train" or train is None:
            continue
        keys = set(map(text_key(train.records), train.records))
        same_text = text_key(part.records)
        hits = [record["id"] for record in part.records if same_text(record) in keys]
        result[part.dataset_name(name)] = {"with": train.dataset_name(name), "count": len(hits), "examples": hits[:5]}
    return result


def _labels(part: Part) -> dict[str, int] | None:
    if part.label_of is None:
        return None
    counts = Counter(map(part.label_of, part.records))
    shown = {}
    for key, count in counts.items():  # a tuple key such as (dimension, score) shows as "流畅性 5"
        parts = key if isinstance(key, tuple) else (key,)
        shown[" ".join(part or "(unlabelled)" for part in parts)] = count
    return dict(sorted(shown.items()))


def prompt_text(record: dict[str, Any]) -> str:
    """The text LLaMA-Factory builds from an alpaca record (without the chat template): prompt\\nquery + output."""
    prompt = "\n".join(text for text in (record["instruction"], record["input"]) if text)
    history = "".join(q + a for q, a in record.get("history", []))
    return record.get("system", "") + history + prompt + record["output"]


def load_tokenizer(spec: str | None, task: str | None = None, model: str | None = None) -> tuple[Any, str]:
    """(tokenizer or None, note). spec None: models/MODEL (the model that will train), else the task's embedded model
    (core.tasks.default_model: models/gemma3 for Chinese tasks, models/smollm2 otherwise, from the working
    directory), else models/smollm2, when present; 'none': skip."""
    if spec is None:
        from core.tasks import default_model

        names = dict.fromkeys([*([model] if model else []), default_model(task) if task else "smollm2", "smollm2"])
        found = [
            Path("models") / name
            for name in names
            if any((Path("models") / name / file).is_file() for file in ("tokenizer_config.json", "tokenizer.json"))
        ]
        if not found:
            return None, f"skipped: no --tokenizer given and {' or '.join(f'models/{n}' for n in names)} not found"
        spec = str(found[0])
    if spec.lower() == "none":
        return None, "skipped: --tokenizer none"
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as err:
        raise AdapterError(f"--tokenizer {spec}: cannot load a tokenizer there ({err})") from None
    return tokenizer, spec


# Where the tokenizer carries no chat template (models/gemma3's GGUF has none; LLaMA-Factory applies its own `gemma`
# template, 11 tokens around a turn), this many tokens are counted for it, so `--fit-cutoff` leaves the header whole.
NO_TEMPLATE_RESERVE = 16


def template_overhead(tokenizer: Any, with_system: bool) -> int:
    """Tokens the chat template adds around one (system,) user, assistant turn; NO_TEMPLATE_RESERVE where the
    tokenizer has no template (or one that refuses an empty turn).

    Without a system turn this includes any default system prompt the template inserts, as LLaMA-Factory does.
    """
    turns = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]
    if with_system:
        turns.insert(0, {"role": "system", "content": ""})
    try:
        ids = tokenizer.apply_chat_template(turns, tokenize=True)
    except Exception:  # no chat template, or one that refuses an empty turn
        return NO_TEMPLATE_RESERVE
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)


def token_stats(records: list[dict[str, Any]], tokenizer: Any, overhead: int, cutoff_len: int) -> dict[str, Any]:
    """Token-length percentiles of whole examples (text + template overhead), batched through a fast tokenizer."""
    lengths: list[int] = []
    batch = 2048
    for start in range(0, len(records), batch):
        texts = [prompt_text(record) for record in records[start : start + batch]]
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        lengths.extend(len(ids) + overhead for ids in encoded)
    if not lengths:
        return {"count": 0}
    lengths.sort()

    def pct(q: float) -> int:
        return lengths[min(len(lengths) - 1, int(q * len(lengths)))]

    return {
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "max": lengths[-1],
        "mean": round(sum(lengths) / len(lengths), 1),
        "cutoff_len": cutoff_len,
        "over_cutoff": sum(length > cutoff_len for length in lengths),
        # every 1%: a run with another cutoff_len reads its share of rows over it from these (pipeline.checks)
        "percentiles": [pct(i / 100) for i in range(101)],
    }


ANSWER_MARGIN = 8  # tokens beyond the longest usual answer: end of turn, a stray word, another tokenizer's split


def answer_stats(records: list[dict[str, Any]], tokenizer: Any) -> dict[str, Any] | None:
    """Token lengths of the answers (`output`) and the generation budget predict takes from them.

    `max_new_tokens` is the 99th percentile plus a margin (a quarter of it, at least ANSWER_MARGIN): the presets'
    4–8 tokens fit labels, not keywords or QA answers. None where the split has no answers (a test file).
    """
    outputs = [record["output"] for record in records if record.get("output")]
    if not outputs:
        return None
    lengths = sorted(len(ids) for ids in tokenizer(outputs, add_special_tokens=False)["input_ids"])
    p99 = lengths[min(len(lengths) - 1, int(0.99 * len(lengths)))]
    return {
        "p50": lengths[len(lengths) // 2],
        "p99": p99,
        "max": lengths[-1],
        "max_new_tokens": p99 + max(ANSWER_MARGIN, p99 // 4),
    }


def fit_inputs(parts: list[Part], tokenizer: Any, cutoff_len: int) -> None:
    """Trim each record's `input` to its head so the templated example fits `cutoff_len` (`--fit-cutoff`).

    LLaMA-Factory truncates an over-long prompt by its tail, which drops the chat template's end of turn and the
    assistant header too: the model is then trained and asked to answer in the middle of the user's text. Trimming
    here keeps the template whole. Every record gets the same room for its answer (the longest output in the run),
    so train and test rows keep the same share of text; the template overhead is the length report's, which errs on
    the short side. The count goes to each part's notes as `fitted_to_cutoff`.
    """
    if tokenizer is None:
        raise AdapterError("--fit-cutoff needs a tokenizer: give --tokenizer PATH (the model's)")
    records = [record for part in parts for record in part.records]
    if not records:
        return
    outputs = tokenizer([record["output"] for record in records], add_special_tokens=False)["input_ids"]
    answer = max(len(ids) for ids in outputs) + 1  # + end of turn
    overheads = {with_system: template_overhead(tokenizer, with_system) for with_system in (False, True)}
    batch = 2048
    for part in parts:
        fitted = 0
        for start in range(0, len(part.records), batch):
            chunk = part.records[start : start + batch]
            rest = [prompt_text({**record, "input": "", "output": ""}) for record in chunk]
            rest_ids = tokenizer(rest, add_special_tokens=False)["input_ids"]
            inputs = tokenizer(
                [record["input"] for record in chunk], add_special_tokens=False, return_offsets_mapping=True
            )
            for offset, record in enumerate(chunk):
                ids, spans = inputs["input_ids"][offset], inputs["offset_mapping"][offset]
                room = cutoff_len - overheads["system" in record] - answer - len(rest_ids[offset]) - 2  # "\n" joins
                if len(ids) <= room:
                    continue
                if room <= 0:
                    raise AdapterError(
                        f"{part.source}: record {record.get('id', start + offset)}: the instruction "
                        f"alone needs more than --cutoff-len {cutoff_len} tokens; raise it"
                    )
                record["input"] = record["input"][: spans[room - 1][1]]
                fitted += 1
        part.notes["fitted_to_cutoff"] = fitted


def build_report(
    task: str, name: str, parts: list[Part], tokenizer: Any = None, token_note: str = "", cutoff_len: int = 1024
) -> dict[str, Any]:
    datasets = {}
    overheads = {}
    for part in parts:
        entry: dict[str, Any] = {
            "file": f"{part.dataset_name(name)}.json",
            "source": str(part.source),
            "rows_in": part.rows_in,
            "rows_out": len(part.records),
            "skipped": len(part.skipped),
            "skipped_rows": part.skipped,
            "labels": _labels(part),
            **part.notes,
            **_duplicates(part),
        }
        if entry["labels"] is None:
            entry["labels"] = "free text"
        if tokenizer is not None:
            with_system = "system" in part.records[0]
            if with_system not in overheads:
                overheads[with_system] = template_overhead(tokenizer, with_system)
            entry["tokens"] = token_stats(part.records, tokenizer, overheads[with_system], cutoff_len)
            answers = answer_stats(part.records, tokenizer)
            if answers is not None:
                entry["tokens"]["answer"] = answers
        datasets[part.dataset_name(name)] = entry
    tokens: dict[str, Any] = {"note": token_note}
    if tokenizer is not None:
        tokens = {
            "tokenizer": token_note,
            "cutoff_len": cutoff_len,
            "template_tokens": max(overheads.values()),
            "method": "batched fast tokenizer over system+history+instruction\\ninput+output, plus the tokens its "
            "chat template adds (an estimate of LLaMA-Factory's cutoff_len check, within a few tokens)",
        }
    return {"task": task, "name": name, "datasets": datasets, "overlap": _overlap(parts, name), "tokens": tokens}


def format_report(report: dict[str, Any]) -> str:
    """The short on-screen table."""
    head = ["dataset", "rows in", "out", "skipped", "dup ids", "dup texts", "overlap", "tok p50/p95/max", ">cutoff"]
    table = [head]
    for dataset, entry in report["datasets"].items():
        overlap = report["overlap"].get(dataset, {}).get("count", "-")
        tokens = entry.get("tokens")
        tok = f"{tokens['p50']}/{tokens['p95']}/{tokens['max']}" if tokens and "p50" in tokens else "-"
        over = tokens.get("over_cutoff", "-") if tokens else "-"
        table.append(
            [
                dataset,
                entry["rows_in"],
                entry["rows_out"],
                entry["skipped"],
                entry["duplicate_ids"]["count"],
                entry["duplicate_texts"]["count"],
                overlap,
                tok,
                over,
            ]
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in table]
    for dataset, entry in report["datasets"].items():
        if isinstance(entry["labels"], dict):
            shown = ", ".join(f"{label or '(none)'}: {count}" for label, count in entry["labels"].items())
            lines.append(f"{dataset} labels: {shown}")
        for key, value in entry.items():
            if value and (
                key.startswith("empty_")
                or key in ("sampled", "first_rows", "limited", "max_per_label", "duplicates_dropped", "nul_dropped")
                or key in ("held_out", "held_out_from", "no_labels")
                or key in READ_NOTE_KEYS
            ):
                lines.append(f"{dataset} {key}: {value}")
        dups = entry["duplicate_texts"]
        if dups["count"]:
            first = " = ".join(dups["examples"][0])
            lines.append(
                f"{dataset} duplicate texts: {dups['count']} ({dups['conflicting_outputs']} with another output), "
                f"e.g. ids {first}; kept (--drop-duplicates drops exact repeats from train)"
            )
        for skip in entry["skipped_rows"][:3]:
            lines.append(f"{dataset} skipped {skip['where']}: {skip['reason']}")
        if entry["skipped"] > 3:
            lines.append(f"{dataset} … {entry['skipped'] - 3} more skipped rows in the report")
    if "note" in report["tokens"]:
        lines.append(f"token lengths {report['tokens']['note']}")
    else:
        tokens = report["tokens"]
        lines.append(f"token lengths: {tokens['tokenizer']} (+{tokens['template_tokens']} template tokens)")
        source = f" ({tokens['cutoff_from']})" if tokens.get("cutoff_from") else ""
        lines.append(f"cutoff_len {tokens['cutoff_len']}{source}")
    return "\n".join(lines)


OVER_CUTOFF_WARN = 0.05  # above this share of over-long rows, say so on screen, not only in the report


def cutoff_warnings(report: dict[str, Any]) -> list[str]:
    """One warning per dataset where more than 5% of the rows are longer than cutoff_len, with what to do."""
    warnings = []
    for dataset, entry in report["datasets"].items():
        tokens, rows = entry.get("tokens") or {}, entry.get("rows_out") or 0
        over = tokens.get("over_cutoff", 0)
        if rows and over > OVER_CUTOFF_WARN * rows:
            warnings.append(
                f"warning: {over} of {rows} rows of {dataset} ({over / rows:.0%}) are longer than cutoff_len "
                f"{tokens['cutoff_len']} tokens. LLaMA-Factory cuts such a prompt's tail, the chat template's "
                "assistant header included, so the model learns to answer mid-text, and train/predict refuse it. "
                "Convert with --fit-cutoff for the model that will train (make data ... MODEL=M "
                "DATA_ARGS=--fit-cutoff fits to M's preset cutoff_len) or raise cutoff_len (ARGS=cutoff_len=N)."
            )
    return warnings
