"""Bench: which chat template suits a base model before any training; one JSON line.

Zero-shot negative log-likelihood (nats) of the response under each LLaMA-Factory template, on the first N CoLA
train rows: the answer's first token (what label scoring ranks) and the template's end-of-turn tokens (what LoRA must
learn first; a base model's untrained turn token shows here). Prompts are built by LLaMA-Factory's own template code.

Run: `.venv/bin/python bench/template_nll.py [--model gemma3] [--templates gemma default] [--rows 48]`
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from predict import COLA

from adapters.glue import COLA_INSTRUCTION
from pipeline.scoring_engine import LabelScorer

ROOT = Path(__file__).resolve().parents[1]


def response_nll(scorer: LabelScorer, record: dict) -> tuple[list[float], list[int], list[int]]:
    import torch

    example = scorer.messages(record)
    prompt, response = scorer.template.encode_oneturn(scorer.tokenizer, example["_prompt"] + example["_response"])
    with torch.inference_mode():
        logp = scorer.model(input_ids=torch.tensor([prompt + response])).logits[0].float().log_softmax(-1)
    return [-float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(response)], prompt, response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3")
    parser.add_argument("--templates", nargs="+", default=["gemma", "default"])
    parser.add_argument("--rows", type=int, default=48)
    args = parser.parse_args()
    with (COLA / "in_domain_train.tsv").open(encoding="utf-8") as handle:
        rows = [line.rstrip("\n").split("\t") for line in handle][: args.rows]
    records = [{"instruction": COLA_INSTRUCTION, "input": r[3], "output": r[1]} for r in rows]
    result: dict = {"bench": "template_nll", "model": args.model, "rows": len(records)}
    for template in args.templates:
        scorer = LabelScorer(
            {
                "model_name_or_path": str(ROOT / "models" / args.model),
                "template": template,
                "cutoff_len": 256,
                "infer_dtype": "float32",
                "flash_attn": "disabled",
            }
        )
        first, end, prompt, response = [], [], [], []
        for record in records:
            nll, prompt, response = response_nll(scorer, record)
            first.append(nll[0])
            end.append(float(np.mean(nll[1:])) if len(nll) > 1 else 0.0)
        result[template] = {
            "answer_first_token_nll": round(float(np.mean(first)), 2),
            "end_tokens_nll": round(float(np.mean(end)), 2),
            "end_tokens": scorer.tokenizer.convert_ids_to_tokens(response[1:]),
            "prompt_starts": scorer.tokenizer.decode(prompt[:6]),
        }
    result["command"] = "python bench/template_nll.py " + " ".join(sys.argv[1:])
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
