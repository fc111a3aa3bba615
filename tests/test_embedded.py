"""The embedded CPU models: the per-task default (one table, MODEL= wins) and the converted Gemma 3 tokenizer."""

from __future__ import annotations

import pytest

from core import tasks
from pipeline.run import Run


def test_default_model_by_task_language(tmp_path):
    assert tasks.get_task("cola").language == "en" and tasks.get_task("judge").language == "zh"
    names = ("cola", "qqp", "paper", "keywords", "judge", "logic", "qa")
    assert [tasks.default_model(name, tmp_path) for name in names] == ["smollm2"] * 4 + ["gemma3"] * 3
    assert tasks.default_model("no_such_dataset", tmp_path) == "smollm2"  # nothing converted yet: English's
    assert Run.resolve("judge", None, tmp_path).model == "gemma3"
    assert Run.resolve("judge", "qwen2", tmp_path).model == "qwen2"  # MODEL= / --model always wins


@pytest.mark.gemma3
def test_gemma3_tokenizer_is_sentencepiece_bpe(gemma3_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gemma3_dir)
    assert len(tokenizer) == 262144
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("The capital of France").input_ids)
    assert pieces == ["<bos>", "The", "▁capital", "▁of", "▁France"]  # a Unigram reading gave ▁c|ap|it|al
    turn = "<start_of_turn>user\n请判断流畅性<end_of_turn>\n<start_of_turn>model\n"
    ids = tokenizer(turn, add_special_tokens=False).input_ids
    assert ids.count(tokenizer.convert_tokens_to_ids("<start_of_turn>")) == 2 and ids[-1] == 107  # "\n"
    assert tokenizer.decode(ids) == turn
