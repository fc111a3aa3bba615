"""Shared fixtures: the real competition data in ../shared/data, a tiny model built offline, the judge sample
converted, and a tiny LoRA trained once per session. The helpers they use are in helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import convert_judge_sample, train_tiny_lora

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
SMOLLM2_DIR = ROOT / "models" / "smollm2"
# Tests that are not about tracking do not pay for it (MLflow's import and store creation, per working folder);
# tests/test_tracking.py turns it on where it is the subject. Inherited by every subprocess and make run.
os.environ.setdefault("TRACK", "0")
GEMMA3_DIR = ROOT / "models" / "gemma3"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real competition files; tests that need them skip (with the reason) where they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real competition data not found at {SHARED_DATA} (set SHARED_DATA or check out ../shared)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct converted by `make setup`."""
    if not (SMOLLM2_DIR / "config.json").is_file():
        pytest.skip(f"{SMOLLM2_DIR} missing: run `make models` (part of `make setup`) first")
    return SMOLLM2_DIR


@pytest.fixture(scope="session")
def gemma3_dir() -> Path:
    """The embedded Gemma 3 270M converted by `make setup`."""
    if not (GEMMA3_DIR / "config.json").is_file():
        pytest.skip(f"{GEMMA3_DIR} missing: run `make models` (part of `make setup`) first")
    return GEMMA3_DIR


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight 2-layer Llama with a freshly trained byte-level BPE tokenizer, saved to a temp folder."""
    from tools.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module")
def judge_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded judge sample converted by the judge adapter (dataset judge_train/judge_test) into a temp data
    dir, one per test module."""
    return convert_judge_sample(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def tiny_lora(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """cola_toy data and a LoRA adapter trained on it with `python -m pipeline train`: one training per session."""
    return train_tiny_lora(tiny_model, tmp_path_factory.getbasetemp() / "tiny-run")


# ---------------------------------------------------------------- a real browser (Debian's chromium, Playwright)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def browser_tools():
    """Playwright's sync API, or a skip naming what is missing; listed first so no server starts for nothing."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium (Debian's package)")
    return pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install playwright")


@pytest.fixture
def page(browser_tools, tmp_path):
    with browser_tools.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context.new_page()
        finally:
            context.close()
