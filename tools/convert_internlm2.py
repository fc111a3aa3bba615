"""Convert an InternLM2 / InternLM2.5 checkpoint to the Llama layout, once, so every stage runs native code.

    python -m tools.convert_internlm2 SRC DST      (SRC: a local folder or a ModelScope id)
    make convert MODEL=internlm2_5                    (→ models/internlm2_5, what factory_configs/internlm2_5 reads)

Why: the remote modelling code breaks generation on transformers >= 4.49 (`DynamicCache.get_max_length` removed;
InternLM#832, LLaMA-Factory #7597/#8048) and label scoring's shared-prefix KV cache needs the Cache API. As
`LlamaForCausalLM` the model trains, scores, predicts, exports and serves (vLLM) with transformers' own code.

The layout (InternLM's own tools/convert2llama.py does the same; this is written from the layout, not copied):
- `attention.wqkv` is fused and grouped per kv head: for each of the `num_key_value_heads` groups, its
  `num_attention_heads / num_key_value_heads` query heads, then one key head, then one value head
  (rows `(kv_head, q_per_kv + 2, head_dim)`). Split into q_proj / k_proj / v_proj.
- `attention.wo` → o_proj; `feed_forward.w1/w3/w2` → gate_proj / up_proj / down_proj;
  `attention_norm` / `ffn_norm` → input_layernorm / post_attention_layernorm; `tok_embeddings` → embed_tokens;
  `output` → lm_head. Checkpoints with `bias: true` have no Llama equivalent and are refused.
- The sentencepiece tokenizer becomes a `LlamaTokenizerFast` (legacy sentencepiece behaviour, which is what
  InternLM2's own tokenizer does: `sp_model.encode` plus `<s>`), special tokens carried over.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

CONFIG_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "tie_word_embeddings",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "initializer_range",
)
RENAMES = (
    ("attention.wo.", "self_attn.o_proj."),
    ("feed_forward.w1.", "mlp.gate_proj."),
    ("feed_forward.w3.", "mlp.up_proj."),
    ("feed_forward.w2.", "mlp.down_proj."),
    ("attention_norm.", "input_layernorm."),
    ("ffn_norm.", "post_attention_layernorm."),
    ("model.tok_embeddings.", "model.embed_tokens."),
)


class ConvertError(RuntimeError):
    """A checkpoint that is not an InternLM2 one, or one this layout cannot hold."""


def llama_config(internlm2: dict, where: Path):
    """The LlamaConfig of an InternLM2 config.json (read as plain JSON: no remote code runs)."""
    from transformers import LlamaConfig

    if internlm2.get("model_type") != "internlm2":
        raise ConvertError(f"{where}: model_type is {internlm2.get('model_type')!r}, expected 'internlm2'")
    if internlm2.get("bias"):
        raise ConvertError(f"{where}: bias is true; LlamaForCausalLM has no bias on wqkv/wo")
    missing = [key for key in CONFIG_KEYS[:7] if key not in internlm2]
    if missing:
        raise ConvertError(f"{where}: missing {', '.join(missing)}")
    kwargs = {key: internlm2[key] for key in CONFIG_KEYS if key in internlm2}
    rope = internlm2.get("rope_scaling")
    if rope:  # InternLM2's "dynamic" NTK scaling is transformers' "dynamic" rope type (same formula)
        rope = {("rope_type" if key == "type" else key): value for key, value in rope.items()}
    return LlamaConfig(
        **kwargs,
        rope_scaling=rope,
        attention_bias=False,
        mlp_bias=False,
        head_dim=internlm2["hidden_size"] // internlm2["num_attention_heads"],
        architectures=["LlamaForCausalLM"],
        dtype=internlm2.get("torch_dtype"),
    )


def split_wqkv(wqkv, num_heads: int, num_kv_heads: int, head_dim: int):
    """(q_proj, k_proj, v_proj) weights of a fused wqkv grouped per kv head: q heads, then k, then v."""
    q_per_kv = num_heads // num_kv_heads
    grouped = wqkv.reshape(num_kv_heads, q_per_kv + 2, head_dim, wqkv.shape[-1])
    q = grouped[:, :q_per_kv].reshape(num_heads * head_dim, -1)
    k = grouped[:, q_per_kv].reshape(num_kv_heads * head_dim, -1)
    v = grouped[:, q_per_kv + 1].reshape(num_kv_heads * head_dim, -1)
    return q.contiguous(), k.contiguous(), v.contiguous()


def llama_tensors(states: dict, config) -> dict:
    """One shard's InternLM2 tensors under their Llama names."""
    out = {}
    for name, tensor in states.items():
        if name.endswith("attention.wqkv.weight"):
            prefix = name[: -len("attention.wqkv.weight")] + "self_attn."
            q, k, v = split_wqkv(tensor, config.num_attention_heads, config.num_key_value_heads, config.head_dim)
            out.update({prefix + "q_proj.weight": q, prefix + "k_proj.weight": k, prefix + "v_proj.weight": v})
            continue
        if name == "output.weight":
            out["lm_head.weight"] = tensor
            continue
        for old, new in RENAMES:
            name = name.replace(old, new)
        out[name] = tensor
    return out


def read_shard(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def shard_files(src: Path) -> list[Path]:
    shards = sorted(src.glob("*.safetensors")) or sorted(src.glob("pytorch_model*.bin"))
    if not shards:
        raise ConvertError(f"{src}: no *.safetensors or pytorch_model*.bin weights")
    return shards


def convert_weights(src: Path, dst: Path, config) -> int:
    """Shard by shard (a 20B model never sits in memory whole); safetensors out, with an index. Returns tensors."""
    from safetensors.torch import save_file

    weight_map, total, count = {}, 0, 0
    shards = shard_files(src)
    for index, shard in enumerate(shards, 1):
        tensors = llama_tensors(read_shard(shard), config)
        name = "model.safetensors" if len(shards) == 1 else f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, str(dst / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        count += len(tensors)
        print(f"[convert] {shard.name} → {name} ({len(tensors)} tensors)", flush=True)
    if len(shards) > 1:
        index_json = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (dst / "model.safetensors.index.json").write_text(json.dumps(index_json, indent=2), encoding="utf-8")
    return count


def _content(token) -> str | None:
    return token.get("content") if isinstance(token, dict) else token


PROBES = ("Hello world", " two  spaces\nand a new line", "请判断下面文本的流畅性，给出1到5的分数。", "A: 0.5\tB: x_y")


def sentencepiece_spec(model_file: Path):
    """The sentencepiece model's normalizer spec (add_dummy_prefix, whitespace handling)."""
    from transformers.convert_slow_tokenizer import import_protobuf

    proto = import_protobuf().ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    return proto.normalizer_spec


def check_tokenizer(tokenizer, model_file: Path) -> None:
    """The converted tokenizer must give sentencepiece's own ids (what InternLM2Tokenizer returns) on the probes."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(model_file))
    for text in PROBES:
        expected = processor.encode(text)
        got = tokenizer(text, add_special_tokens=False)["input_ids"]
        if got != expected:
            raise ConvertError(
                f"{model_file}: the converted tokenizer splits {text!r} as {got}, sentencepiece as "
                f"{expected}; this sentencepiece model needs InternLM2's own tokenizer"
            )


def convert_tokenizer(src: Path, dst: Path) -> None:
    """InternLM2's sentencepiece model as a LlamaTokenizerFast (tokenizer.json), special tokens as in SRC."""
    from transformers import LlamaTokenizerFast

    config_path = src / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    model_file = src / "tokenizer.model"
    if not model_file.is_file():
        raise ConvertError(f"{src}: no tokenizer.model (InternLM2 ships a sentencepiece model)")
    special = [_content(t) for t in config.get("additional_special_tokens", [])]
    special += [
        _content(t) for t in config.get("added_tokens_decoder", {}).values() if isinstance(t, dict) and t.get("special")
    ]
    roles = {
        role: _content(config[role])
        for role in ("bos_token", "eos_token", "unk_token", "pad_token")
        if config.get(role)
    }
    extra = [t for t in dict.fromkeys(special) if t and t not in roles.values()]
    tokenizer = LlamaTokenizerFast(
        vocab_file=str(model_file),
        from_slow=True,
        legacy=True,
        add_prefix_space=sentencepiece_spec(model_file).add_dummy_prefix,
        add_bos_token=config.get("add_bos_token", True),
        add_eos_token=config.get("add_eos_token", False),
        additional_special_tokens=extra,
        clean_up_tokenization_spaces=False,
        **roles,
    )
    check_tokenizer(tokenizer, model_file)
    if config.get("chat_template"):
        tokenizer.chat_template = config["chat_template"]
    tokenizer.save_pretrained(dst)


def convert(src: str | Path, dst: str | Path) -> Path:
    """SRC (an InternLM2 folder) → DST (LlamaForCausalLM folder: config, safetensors, tokenizer, generation config)."""
    src, dst = Path(src), Path(dst)
    config_path = src / "config.json"
    if not config_path.is_file():
        raise ConvertError(f"{config_path} not found")
    config = llama_config(json.loads(config_path.read_text(encoding="utf-8")), config_path)
    partial = dst.with_name(dst.name + ".partial")  # an interrupted conversion never looks finished
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    count = convert_weights(src, partial, config)
    config.save_pretrained(partial)
    convert_tokenizer(src, partial)
    if (src / "generation_config.json").is_file():
        shutil.copy2(src / "generation_config.json", partial / "generation_config.json")
    shutil.rmtree(dst, ignore_errors=True)
    partial.rename(dst)
    print(f"[convert] {count} tensors, LlamaForCausalLM → {dst}", flush=True)
    return dst


def resolve_source(src: str) -> Path:
    """A local folder as is; anything else is a ModelScope id, downloaded (USE_MODELSCOPE_HUB as in the presets)."""
    if Path(src).is_dir():
        return Path(src)
    from modelscope import snapshot_download

    return Path(snapshot_download(src))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        convert(resolve_source(args[0]), args[1])
    except ConvertError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
