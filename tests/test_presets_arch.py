"""Every seed preset on its own architecture (issue #15): tiny random twins of the real models (tests/tiny_arch.py),
driven through the presets' real YAMLs with only model_name_or_path swapped (plus step counts and worker counts
for 2 cores): train → label scoring (fast and multi-token paths vs a naive forward) → generation predict → export
→ the merged folder reloaded and compared with base + adapter. And the InternLM2 → Llama converter against an
independent InternLM2 forward written here from the published layout.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import toy_records
from tiny_arch import MODELS, build_internlm2_source, build_tiny_arch

from pipeline.cli import main as pipeline_main
from pipeline.inference import infer_arguments
from pipeline.presets import resolve_config
from pipeline.scoring_engine import LabelScorer, score_encoded
from tools.convert_internlm2 import ConvertError, convert

pytestmark = pytest.mark.arch
TASK = "cola_arch"
WORDS = ("the", "cat", "sat", "on", "a", "mat", "dog", "ran", "fast", "quick", "brown", "fox", "jumps", "over", "lazy")
# 2 cores: no worker processes; a handful of optimizer steps. Everything else is the preset's own.
SMALL = ["preprocessing_num_workers=1", "dataloader_num_workers=0"]
TRAIN_SMALL = [
    *SMALL,
    "max_steps=2",
    "per_device_train_batch_size=4",
    "gradient_accumulation_steps=1",
    "logging_steps=1",
    "save_steps=100",
    "plot_loss=false",
]
# What each model's own chat format looks like (vendors' model cards), system "S", user "Q", generation prompt.
RENDERED = {
    "qwen2": "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n",
    "glm4": "[gMASK]<sop><|system|>\nS<|user|>\nQ<|assistant|>",
    "internlm2_5": "<s><|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n",
    "gemma2": "<bos><start_of_turn>user\nS\n\nQ<end_of_turn>\n<start_of_turn>model\n",  # no system role: folded in
    "gemma": "System: S<eos>\nHuman: Q<eos>\nAssistant:",  # template default: a base model, no chat tokens
}
EXPECTED_CLASS = {
    "qwen2": "Qwen2ForCausalLM",
    "glm4": "GlmForCausalLM",
    "internlm2_5": "LlamaForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma": "GemmaForCausalLM",
}


# ---------------------------------------------------------------- the InternLM2 converter


def rms_norm(x, weight, eps):
    import torch

    variance = x.float().pow(2).mean(-1, keepdim=True)
    return weight * (x.float() * torch.rsqrt(variance + eps))


def rotate(x, positions, theta):
    """Rotary embedding, half-split (rotate_half) convention, on (..., seq, head_dim)."""
    import torch

    dim = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    angles = positions[:, None].float() * inv_freq[None, :]
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    half = torch.cat([-x[..., dim // 2 :], x[..., : dim // 2]], -1)
    return x * cos + half * sin


def internlm2_logits(src: Path, ids: list[int]):
    """An InternLM2 forward from the published layout, on the raw checkpoint: nothing from the converter."""
    import torch
    from safetensors.torch import load_file

    config = json.loads((src / "config.json").read_text())
    w = {k: v for shard in sorted(src.glob("*.safetensors")) for k, v in load_file(shard).items()}
    heads, kv, eps = config["num_attention_heads"], config["num_key_value_heads"], config["rms_norm_eps"]
    head_dim, q_per_kv = config["hidden_size"] // heads, heads // kv
    seq = len(ids)
    positions = torch.arange(seq)
    x = w["model.tok_embeddings.weight"][torch.tensor(ids)]
    causal = torch.full((seq, seq), float("-inf")).triu(1)
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms_norm(x, w[p + "attention_norm.weight"], eps)
        qkv = (h @ w[p + "attention.wqkv.weight"].T).view(seq, kv, q_per_kv + 2, head_dim)
        q = qkv[:, :, :q_per_kv].reshape(seq, heads, head_dim).transpose(0, 1)  # each kv group: q heads, k, v
        k = qkv[:, :, q_per_kv].transpose(0, 1).repeat_interleave(q_per_kv, 0)
        v = qkv[:, :, q_per_kv + 1].transpose(0, 1).repeat_interleave(q_per_kv, 0)
        q, k = rotate(q, positions, config["rope_theta"]), rotate(k, positions, config["rope_theta"])
        attn = ((q @ k.transpose(-1, -2)) / head_dim**0.5 + causal).softmax(-1) @ v
        x = x + attn.transpose(0, 1).reshape(seq, heads * head_dim) @ w[p + "attention.wo.weight"].T
        h = rms_norm(x, w[p + "ffn_norm.weight"], eps)
        gate = torch.nn.functional.silu(h @ w[p + "feed_forward.w1.weight"].T)
        x = x + (gate * (h @ w[p + "feed_forward.w3.weight"].T)) @ w[p + "feed_forward.w2.weight"].T
    return rms_norm(x, w["model.norm.weight"], eps) @ w["output.weight"].T


def test_converted_internlm2_gives_the_same_logits(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    src = build_internlm2_source(tmp_path / "internlm2")
    model = AutoModelForCausalLM.from_pretrained(convert(src, tmp_path / "llama"), dtype=torch.float32)
    assert type(model).__name__ == "LlamaForCausalLM"
    ids = torch.randint(0, model.config.vocab_size, (24,), generator=torch.Generator().manual_seed(1)).tolist()
    with torch.inference_mode():
        expected = internlm2_logits(src, ids)
        got = model(input_ids=torch.tensor([ids])).logits[0]
    assert expected.abs().max() > 0.1  # not a vacuous comparison
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_converted_tokenizer_splits_like_internlm2(tmp_path):
    """InternLM2Tokenizer: split on special tokens, sentencepiece each piece, <s> first. The fast Llama one agrees."""
    import re

    import sentencepiece as spm
    from transformers import AutoTokenizer

    src = build_internlm2_source(tmp_path / "internlm2")
    tokenizer = AutoTokenizer.from_pretrained(convert(src, tmp_path / "llama"))
    processor = spm.SentencePieceProcessor(model_file=str(src / "tokenizer.model"))
    special = json.loads((src / "tokenizer_config.json").read_text())["additional_special_tokens"]
    for text in ("<|im_start|>user\n请判断下面文本的流畅性<|im_end|>\n<|im_start|>assistant\n", "The lazy dog  ran.\n"):
        expected = [1]
        for piece in filter(None, re.split("(" + "|".join(map(re.escape, special)) + ")", text)):
            expected += [processor.piece_to_id(piece)] if piece in special else processor.encode(piece)
        assert tokenizer(text)["input_ids"] == expected


def test_converter_refuses_what_llama_cannot_hold(tmp_path):
    src = build_internlm2_source(tmp_path / "internlm2")
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "bias": True}))
    with pytest.raises(ConvertError, match=r"config.json: bias is true"):
        convert(src, tmp_path / "llama")
    (src / "config.json").write_text(json.dumps({**config, "model_type": "qwen2"}))
    with pytest.raises(ConvertError, match=r"model_type is 'qwen2', expected 'internlm2'"):
        convert(src, tmp_path / "llama")
    assert not (tmp_path / "llama").exists()


# ---------------------------------------------------------------- each preset on its architecture


def arch_records(n: int, split: str, seed: int) -> list[dict]:
    """Longer toy sentences (8-20 words) of fewer words, labels 50/50."""
    return toy_records(n, split, seed, words=WORDS, length=(8, 20), even=True)


def write_data(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    info = {}
    for split, n in (("train", 16), ("test", 6)):
        (data_dir / f"{TASK}_{split}.json").write_text(json.dumps(arch_records(n, split, len(split))), encoding="utf-8")
        info[f"{TASK}_{split}"] = {
            "file_name": f"{TASK}_{split}.json",
            "formatting": "alpaca",
            "columns": {"prompt": "instruction", "query": "input", "response": "output"},
        }
    (data_dir / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")


def run_stage(stage: str, model: str, tiny: Path, data: Path, *overrides: str) -> None:
    """`python -m pipeline STAGE` in this process (its llamafactory-cli is still a subprocess): one import less."""
    code = pipeline_main(
        [
            stage,
            "--model",
            model,
            "--task",
            TASK,
            "--data-dir",
            str(data),
            f"model_name_or_path={tiny}",
            f"dataset_dir={data}",
            *overrides,
        ]
    )
    assert code == 0, f"python -m pipeline {stage} --model {model} failed (its output is above)"


def naive_log_likelihood(model, prompt: list[int], target: list[int]) -> float:
    """One unpadded sequence, full logits, no cache: the definition the fast paths must match."""
    import torch

    with torch.inference_mode():
        logp = model(input_ids=torch.tensor([prompt + target])).logits[0].float().log_softmax(-1)
    return float(sum(logp[len(prompt) - 1 + j, token] for j, token in enumerate(target)))


def check_rendered_prompt(model: str, scorer: LabelScorer) -> None:
    """LLaMA-Factory's template (what training and scoring both feed) renders the model's own chat format, with
    every chat marker one special token."""
    messages = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": ""}]
    prompt, _ = scorer.template.encode_oneturn(scorer.tokenizer, messages, "S", None)
    tokens = scorer.tokenizer.convert_ids_to_tokens(prompt)
    rendered = "".join(
        t if t in scorer.tokenizer.all_special_tokens else scorer.tokenizer.convert_tokens_to_string([t])
        for t in tokens
    )
    assert rendered.replace("\u2581", " ").replace("> ", ">") == RENDERED[model]
    markers = [t for t in scorer.tokenizer.all_special_tokens if t in RENDERED[model]]
    assert all(t in tokens for t in markers), (markers, tokens)


def check_scores(model: str, scorer: LabelScorer, records: list[dict]) -> None:
    """Fast path (one-token labels, shared-prefix cache) and multi-token path equal the naive forward."""
    for labels in (("0", "1"), ("yes", "no", "perhaps")):
        encoded = scorer.encode(records, [labels] * len(records))
        if labels == ("0", "1"):
            # glm4's assistant turn is "\n{{content}}": the newline comes first, so its labels never reduce to
            # their own tokens and take the multi-token path (same scores, a second pass)
            single = all(len(t) == 1 for e in encoded for t in e.targets)
            assert single is (model != "glm4"), [e.targets for e in encoded[:1]]
        else:
            assert any(len(t) > 1 for t in encoded[0].targets), "one of these words should take several tokens"
        # gemma2's tiny window (16) is shorter than these prompts, where the shared prefix cache is wrong (below)
        scores = score_encoded(
            scorer.model, encoded, batch_size=4, pad_id=scorer.pad_id, share_prefix=model != "gemma2"
        )
        for enc, s in zip(encoded, scores, strict=True):
            expected = [naive_log_likelihood(scorer.model, enc.prompt, t) for t in enc.targets]
            np.testing.assert_allclose(s, expected, rtol=1e-4, atol=1e-4, err_msg=str(labels))


def check_merged_equals_adapter(tiny: Path, adapter: Path, merged: Path, prompt: list[int]) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32), adapter)
    reloaded = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    assert type(reloaded).__name__ == type(base.get_base_model()).__name__
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        expected, got = base(input_ids=ids).logits, reloaded(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_preset_runs_on_its_architecture(model, tmp_path, monkeypatch):
    from transformers import AutoConfig

    monkeypatch.chdir(tmp_path)  # saves/ and predictions/ land here, as under the repo root
    monkeypatch.setenv("DISABLE_VERSION_CHECK", "1")

    tiny = build_tiny_arch(model, tmp_path / "model")
    assert AutoConfig.from_pretrained(tiny).architectures == [EXPECTED_CLASS[model]]
    data = tmp_path / "data"
    write_data(data)
    run_stage("train", model, tiny, data, *TRAIN_SMALL)
    adapter = tmp_path / "saves" / TASK / model / "lora"
    assert (adapter / "adapter_model.safetensors").is_file()

    config = resolve_config(
        model,
        "predict",
        TASK,
        {"model_name_or_path": str(tiny), "dataset_dir": str(data), "adapter_name_or_path": str(adapter)},
        cuda=False,
    )
    scorer = LabelScorer(infer_arguments(config))
    if model == "gemma2":
        assert scorer.model.config._attn_implementation == "eager"  # the preset's pin reached the model
    check_rendered_prompt(model, scorer)
    records = json.loads((data / f"{TASK}_test.json").read_text(encoding="utf-8"))
    check_scores(model, scorer, records)
    prompt = scorer.encode(records[:1], [("0", "1")])[0].prompt

    run_stage("predict", model, tiny, data, *SMALL, "max_new_tokens=2")
    with (tmp_path / "predictions" / TASK / f"{model}.csv").open(encoding="utf-8") as handle:
        assert [row["id"] for row in csv.DictReader(handle)] == [r["id"] for r in records]

    run_stage("export", model, tiny, data, "export_device=cpu")
    merged = tmp_path / "saves" / TASK / model / "merged"
    assert (merged / "Modelfile").is_file()
    check_merged_equals_adapter(tiny, adapter, merged, prompt)


@pytest.fixture(scope="module")
def gemma2_base(tmp_path_factory) -> LabelScorer:
    tiny = build_tiny_arch("gemma2", tmp_path_factory.mktemp("gemma2") / "model")
    return LabelScorer(
        {
            "model_name_or_path": str(tiny),
            "template": "gemma2",
            "flash_attn": "disabled",
            "cutoff_len": 2048,
            "infer_dtype": "float32",
        }
    )


def shared_prefix_error(scorer: LabelScorer, window: int) -> float:
    """Max |shared-prefix-cache score − naive score| on toy rows, with the sliding window set to `window`."""
    records = arch_records(6, "test", 4)
    encoded = scorer.encode(records, [("0", "1")] * len(records))
    scorer.model.config.sliding_window = window
    assert min(len(e.prompt) for e in encoded) > 16 and max(len(e.prompt) for e in encoded) < 128
    scores = score_encoded(scorer.model, encoded, batch_size=4, pad_id=scorer.pad_id)
    naive = [[naive_log_likelihood(scorer.model, e.prompt, t) for t in e.targets] for e in encoded]
    return float(np.abs(np.array(scores) - np.array(naive)).max())


def test_gemma2_shared_prefix_cache_within_the_window(gemma2_base):
    """Prompts shorter than the sliding window (gemma-2-9b: 4096 > the preset's cutoff_len 2048): scores exact."""
    assert shared_prefix_error(gemma2_base, window=128) < 1e-4


def test_gemma2_shared_prefix_cache_beyond_the_window(gemma2_base):
    """Longer prompts than the window: no shared prefix (its padding would count in the window; was 0.014 off)."""
    assert shared_prefix_error(gemma2_base, window=16) < 1e-4
