"""Architecture-faithful tiny models: for each seed preset, a random 2-layer model of the SAME class and config shape
as the real checkpoint, plus a tokenizer that carries its template's special tokens. Built offline, in seconds.

    python tests/tiny_arch.py MODEL OUT_DIR      (MODEL: qwen2, glm4, internlm2_5, gemma2, gemma)

What is kept from the real model (what a preset's code path could trip on), what is shrunk (sizes):
- qwen2        Qwen2ForCausalLM: GQA, q/k/v biases, untied lm_head; `<|im_start|>`/`<|im_end|>`, eos `<|im_end|>`
- glm4         GlmForCausalLM (glm-4-9b-chat-hf): GQA, partial rotary (0.5), qkv biases, eos list;
               `[gMASK]<sop><|system|><|user|><|assistant|><|observation|>`
- internlm2_5  an InternLM2 checkpoint (fused per-kv-head wqkv, sentencepiece tokenizer with `<|im_start|>`), passed
               through tools.convert_internlm2 → LlamaForCausalLM, as `make convert` does for the real one
- gemma2       Gemma2ForCausalLM: attention and final logit softcapping, alternating sliding/full layers with a
               16-token window (shorter than the test prompts, so the window is exercised), head_dim × heads ≠
               hidden, tied embeddings; `<bos><start_of_turn><end_of_turn><eos>`
- gemma        GemmaForCausalLM (gemma-2b, a base model): multi-query attention, tied embeddings, gelu; same tokens
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from tools.tiny import CORPUS

SEED = 0
GEMMA_TOKENS = {
    "pad_token": "<pad>",
    "eos_token": "<eos>",
    "bos_token": "<bos>",
    "unk_token": "<unk>",
    "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"],
}
TOKENS = {
    "qwen2": {"pad_token": "<|endoftext|>", "eos_token": "<|im_end|>", "additional_special_tokens": ["<|im_start|>"]},
    "glm4": {
        "pad_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "additional_special_tokens": [
            "[MASK]",
            "[gMASK]",
            "[sMASK]",
            "<sop>",
            "<eop>",
            "<|system|>",
            "<|user|>",
            "<|assistant|>",
            "<|observation|>",
        ],
    },
    "gemma2": GEMMA_TOKENS,
    "gemma": GEMMA_TOKENS,
}
INTERNLM2_TOKENS = ["<|im_start|>", "<|im_end|>", "<|action_start|>", "<|action_end|>", "<|interpreter|>", "<|plugin|>"]
MODELS = ("qwen2", "glm4", "internlm2_5", "gemma2", "gemma")


# ---------------------------------------------------------------- tokenizers


def bpe_tokenizer(tokens: dict, vocab_size: int = 512):
    """A byte-level BPE trained on the tiny corpus, with the model's special tokens as single ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    roles = {key: value for key, value in tokens.items() if key != "additional_special_tokens"}
    special = list(dict.fromkeys([*roles.values(), *tokens.get("additional_special_tokens", [])]))
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, clean_up_tokenization_spaces=False, **tokens)


def internlm2_sentencepiece(out_dir: Path):
    """tokenizer.model + tokenizer_config.json as InternLM2 ships them: sentencepiece BPE with byte fallback, Llama's
    normalisation (identity, whitespace kept, dummy prefix), <unk>/<s>/</s> at 0/1/2, the chat tokens as
    user-defined pieces, the remote tokenizer class named."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 4),
        model_writer=model,
        model_type="bpe",
        vocab_size=400,
        byte_fallback=True,
        character_coverage=1.0,
        user_defined_symbols=INTERNLM2_TOKENS,
        hard_vocab_limit=False,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    (out_dir / "tokenizer.model").write_bytes(model.getvalue())
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    decoder = {str(i): {"content": p, "special": True} for i, p in enumerate(("<unk>", "<s>", "</s>"))}
    decoder.update({str(processor.piece_to_id(t)): {"content": t, "special": True} for t in INTERNLM2_TOKENS})
    config = {
        "tokenizer_class": "InternLM2Tokenizer",
        "auto_map": {
            "AutoTokenizer": [
                "tokenization_internlm2.InternLM2Tokenizer",
                "tokenization_internlm2_fast.InternLM2TokenizerFast",
            ]
        },
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "</s>",
        "add_bos_token": True,
        "add_eos_token": False,
        "additional_special_tokens": INTERNLM2_TOKENS,
        "added_tokens_decoder": decoder,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return processor


# ---------------------------------------------------------------- configs


def tiny_config(model: str, tokenizer):
    """The real model's class and structural features at toy sizes; special-token ids from the tokenizer."""
    from transformers import Gemma2Config, GemmaConfig, GlmConfig, Qwen2Config

    ids = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "num_hidden_layers": 2,
        "max_position_embeddings": 1024,
    }
    if model == "qwen2":
        return Qwen2Config(
            **ids,
            hidden_size=64,
            intermediate_size=128,
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_theta=1e6,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            use_sliding_window=False,
            bos_token_id=None,
            eos_token_id=tokenizer.eos_token_id,
        )
    if model == "glm4":
        eos = [tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|user|>", "<|observation|>")]
        return GlmConfig(
            **ids,
            hidden_size=64,
            intermediate_size=128,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            partial_rotary_factor=0.5,
            attention_bias=True,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=eos,
        )
    roles = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    if model == "gemma":
        return GemmaConfig(
            **ids,
            **roles,
            hidden_size=64,
            intermediate_size=256,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=16,
            hidden_activation="gelu_pytorch_tanh",
            tie_word_embeddings=True,
        )
    if model == "gemma2":
        return Gemma2Config(
            **ids,
            **roles,
            hidden_size=48,
            intermediate_size=128,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            query_pre_attn_scalar=16,
            attn_logit_softcapping=50.0,
            final_logit_softcapping=30.0,
            sliding_window=16,
            layer_types=["sliding_attention", "full_attention"],
            tie_word_embeddings=True,
        )
    raise ValueError(f"no tiny config for {model!r}; expected one of {', '.join(MODELS)}")


INTERNLM2_CONFIG = {
    "architectures": ["InternLM2ForCausalLM"],
    "model_type": "internlm2",
    "bias": False,
    "auto_map": {
        "AutoConfig": "configuration_internlm2.InternLM2Config",
        "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
    },
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-5,
    "rope_theta": 1e6,
    "rope_scaling": {"type": "dynamic", "factor": 2.0},
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
    "torch_dtype": "float32",
    "attn_implementation": "eager",
}


# ---------------------------------------------------------------- builders


def build_internlm2_source(out_dir: str | Path) -> Path:
    """A raw InternLM2 checkpoint (remote-code layout, two safetensors shards + index), random weights, seed 0."""
    import torch
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    processor = internlm2_sentencepiece(out_dir)
    vocab = processor.get_piece_size()
    config = {**INTERNLM2_CONFIG, "vocab_size": vocab}
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = hidden // heads
    generator = torch.Generator().manual_seed(SEED)

    def rand(*shape, scale=0.1):
        return torch.randn(*shape, generator=generator) * scale

    def norm():  # not all-ones, so a swapped norm would show in the logits
        return 1.0 + rand(hidden)

    shards: list[dict] = [{"model.tok_embeddings.weight": rand(vocab, hidden)}, {}]
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        shards[layer % 2].update(
            {
                prefix + "attention.wqkv.weight": rand((heads + 2 * kv) * head_dim, hidden),
                prefix + "attention.wo.weight": rand(hidden, heads * head_dim),
                prefix + "feed_forward.w1.weight": rand(inter, hidden),
                prefix + "feed_forward.w3.weight": rand(inter, hidden),
                prefix + "feed_forward.w2.weight": rand(hidden, inter),
                prefix + "attention_norm.weight": norm(),
                prefix + "ffn_norm.weight": norm(),
            }
        )
    shards[1].update({"model.norm.weight": norm(), "output.weight": rand(vocab, hidden)})
    weight_map = {}
    for index, tensors in enumerate(shards, 1):
        name = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, str(out_dir / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
    (out_dir / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}), encoding="utf-8")
    (out_dir / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    generation = {"bos_token_id": 1, "eos_token_id": [2, processor.piece_to_id("<|im_end|>")]}  # as the chat model's
    (out_dir / "generation_config.json").write_text(json.dumps(generation), encoding="utf-8")
    return out_dir


def build_tiny_arch(model: str, out_dir: str | Path) -> Path:
    """Save MODEL's tiny twin (weights, config, tokenizer, generation config) to OUT_DIR; return the folder."""
    out_dir = Path(out_dir)
    if model == "internlm2_5":
        from tools.convert_internlm2 import convert

        with tempfile.TemporaryDirectory() as source:
            return convert(build_internlm2_source(Path(source) / "internlm2"), out_dir)
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    if model not in TOKENS:
        raise ValueError(f"no tiny model for {model!r}; expected one of {', '.join(MODELS)}")
    tokenizer = bpe_tokenizer(TOKENS[model])
    config = tiny_config(model, tokenizer)
    torch.manual_seed(SEED)
    network = AutoModelForCausalLM.from_config(config)
    network.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    network.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in MODELS:
        sys.exit(f"usage: python tests/tiny_arch.py {{{','.join(MODELS)}}} OUT_DIR")
    print(build_tiny_arch(sys.argv[1], sys.argv[2]))
