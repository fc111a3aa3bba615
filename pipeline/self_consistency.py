"""Self-consistency samples from the API server (`make serve`): N sampled answers per question, labels extracted.

    API_KEY=... python -m pipeline.self_consistency --model smollm2 --task logic --samples 5 [--port 7860] [--resume] [key=value ...]
    (make sc MODEL=smollm2 TASK=logic SAMPLES=5 PORT=7860)
    python -m voting self-consistency predictions/logic/smollm2_samples.csv --task logic --out ...

Each record of the task's test split (the predict preset's eval_dataset) is sent as it was trained: instruction and
input joined by "\\n" as the user message, the record's system (if its dataset has one) as the system message, the
way LLaMA-Factory's alpaca converter builds them; the server applies the chat template and default_system. One
request per id asks for its missing samples at once (`n`). Answers go through core.extract (the task's labels;
logic: the row's option letters; judge: its dimension's scale) into predictions/TASK/MODEL_samples.csv:
`id,prediction,sample,text[,group]`, where prediction is the label ("" where the text does not parse, so that
sample abstains in the vote) and text the raw answer. Ties are the vote's business (first sample wins).

Requests run concurrently (--concurrency), each with a timeout, retried with exponential backoff on timeouts,
connection errors, 429 and 5xx. The file is rewritten atomically as samples arrive. Ids left incomplete are
listed at the end (exit code 1); `--resume` keeps every sample already in the file and asks only for the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

from core import InputError
from core.extract import OK, extract_label
from core.fileio import atomic_write_csv, formula_raw
from core.paths import predictions_csv, predictions_dir
from core.records import describe_trial, trial_records
from core.tasks import TaskSpec, find_task, labels_task
from pipeline.errors import RunError
from pipeline.inference import load_records
from pipeline.run import Run, stage_parser

FIELDS = ("id", "prediction", "sample", "text")


class AuthError(RuntimeError):
    """The server rejected the API key: retrying cannot help."""


def chat_messages(record: dict, columns: dict[str, str] | None = None) -> list[dict[str, str]]:
    """The training prompt as chat messages: LLaMA-Factory's alpaca converter joins prompt and query with "\\n"."""
    columns = columns or {}
    parts = [record.get(columns.get("prompt", "instruction")), record.get(columns.get("query", "input"))]
    messages = []
    system = record.get(columns["system"]) if columns.get("system") else None
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": "\n".join(str(p) for p in parts if p)})
    return messages


def whole_characters(text: str) -> str:
    """The answer without a trailing U+FFFD: a multi-byte character cut by the token limit decodes as one."""
    return text.rstrip("\ufffd")


def extract(text: str, record: dict, task: TaskSpec) -> str:
    """The sample's label, "" where it does not parse; free-text tasks keep the stripped text."""
    if task.free_text:
        return text.strip()
    try:
        _, synonyms = task.rules_for(task.group_of(record))
    except KeyError:
        synonyms = task.synonyms
    label, status = extract_label(text, task.candidates(record), synonyms)
    return label if status == OK and label is not None else ""


def read_samples(path: Path) -> dict[tuple[str, int], dict]:
    """{(id, sample): row} of an earlier samples file (--resume)."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("id", "prediction", "sample") if c not in (reader.fieldnames or [])]
        if missing:
            raise RunError(
                f"{path}: header {','.join(reader.fieldnames or [])} lacks {','.join(missing)}; "
                "expected a samples file written by pipeline.self_consistency"
            )
        rows = {}
        for line, row in enumerate(reader, start=2):
            try:
                rows[(row["id"], int(row["sample"]))] = {key: formula_raw(value) for key, value in row.items()}
            except ValueError:
                raise RunError(f"{path} row {line}: sample is {row['sample']!r}, expected an integer") from None
    return rows


class SampleFile:
    """The samples gathered so far, rewritten atomically (all rows, record order then sample) now and then."""

    def __init__(
        self,
        path: Path,
        records: list[dict],
        rows: dict[tuple[str, int], dict],
        every: float,
        group_col: str | None = None,
    ):
        self.path, self.rows, self.every, self.last = path, rows, every, 0.0
        self.order = {r["id"]: i for i, r in enumerate(records)}
        self.extra = [group_col] if group_col and any(group_col in r for r in records) else []

    def add(self, row: dict) -> None:
        self.rows[(row["id"], int(row["sample"]))] = row
        if time.monotonic() - self.last >= self.every:
            self.flush()

    def flush(self) -> None:
        keys = sorted(self.rows, key=lambda k: (self.order.get(k[0], len(self.order)), k[0], k[1]))
        atomic_write_csv(self.path, [self.rows[key] for key in keys], fieldnames=[*FIELDS, *self.extra])
        self.last = time.monotonic()


async def ask(client, url: str, payload: dict, args: argparse.Namespace) -> list[str]:
    """The answers of one chat completion; retries with exponential backoff and jitter on transient failures."""
    import httpx

    for attempt in range(args.retries + 1):
        try:
            response = await client.post(url, json=payload)
            if response.status_code in (401, 403):
                raise AuthError(f"{url}: HTTP {response.status_code}: the server rejected API_KEY")
            if response.status_code == 429 or response.status_code >= 500:
                raise httpx.HTTPStatusError(f"HTTP {response.status_code}", request=response.request, response=response)
            response.raise_for_status()
            return [whole_characters(choice["message"]["content"] or "") for choice in response.json()["choices"]]
        except (httpx.TimeoutException, httpx.TransportError, httpx.HTTPStatusError) as err:
            retryable = not isinstance(err, httpx.HTTPStatusError) or (
                err.response.status_code == 429 or err.response.status_code >= 500
            )
            if not retryable or attempt == args.retries:
                raise
            await asyncio.sleep(args.backoff * 2**attempt * (1 + 0.25 * random.random()))
    raise AssertionError("unreachable")


async def gather_samples(
    records: list[dict],
    todo: dict[str, list[int]],
    out: SampleFile,
    rules,
    columns: dict[str, str],
    args: argparse.Namespace,
) -> dict[str, str]:
    """Ask for every id's missing samples; return {id: why it is incomplete}."""
    import httpx
    from tqdm import tqdm

    by_id = {r["id"]: r for r in records}
    failed: dict[str, str] = {}
    gone = asyncio.Event()  # the server stopped answering: do not queue the remaining ids behind retries
    semaphore = asyncio.Semaphore(args.concurrency)
    url = f"http://{args.host}:{args.port}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {os.environ['API_KEY']}"}
    bar = tqdm(total=sum(map(len, todo.values())), unit="sample", desc=f"sc {args.task}", mininterval=1.0)

    async def one(client, record_id: str, samples: list[int]) -> None:
        async with semaphore:
            if gone.is_set():
                failed[record_id] = "server unreachable"
                return
            record = by_id[record_id]
            payload = {
                "model": args.model,
                "messages": chat_messages(record, columns),
                "n": len(samples),
                "do_sample": True,
                "temperature": args.temperature,
            }
            if args.top_p is not None:
                payload["top_p"] = args.top_p
            if args.max_tokens is not None:
                payload["max_tokens"] = args.max_tokens
            try:
                answers = await ask(client, url, payload, args)
            except AuthError:
                raise
            except httpx.TimeoutException:
                failed[record_id] = f"timed out after {args.retries + 1} tries"
                return
            except httpx.TransportError as err:
                failed[record_id] = f"connection failed ({type(err).__name__})"
                gone.set()
                return
            except (httpx.HTTPStatusError, KeyError, ValueError) as err:
                failed[record_id] = f"bad response ({err})"
                return
            for sample, text in zip(samples, answers, strict=False):
                row = {"id": record_id, "prediction": extract(text, record, rules), "sample": sample, "text": text}
                if rules.group_col and rules.group_col in record:
                    row[rules.group_col] = record[rules.group_col]
                out.add(row)
            bar.update(min(len(samples), len(answers)))
            if len(answers) < len(samples):
                failed[record_id] = f"{len(answers)} of {len(samples)} samples returned"

    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    try:
        # --timeout bounds the answer; connecting to a live local server is quick, a dead one refuses at once
        timeout = httpx.Timeout(args.timeout, connect=max(args.timeout, 10.0))
        async with httpx.AsyncClient(timeout=timeout, headers=headers, limits=limits) as client:
            # every request ends before the client closes (a 401 ends each at once); then the first error is raised
            results = await asyncio.gather(
                *(one(client, record_id, samples) for record_id, samples in todo.items()), return_exceptions=True
            )
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            raise errors[0]
    finally:
        bar.close()
    return failed


def wait_for_server(host: str, port: int, seconds: float) -> bool:
    """Poll GET /v1/models until the server answers 200 (True) or `seconds` pass (False)."""
    import httpx

    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {os.environ.get('API_KEY', '')}"}
    while True:
        try:
            if httpx.get(f"http://{host}:{port}/v1/models", headers=headers, timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def samples_of_other_trials(run: Run, ids: set[str]) -> dict[tuple[str, int], dict]:
    """--resume of a new trial size: the samples other trials (and the full split) of this split already asked for,
    for this trial's rows (every trial's rows are the first of the same order, core.records.trial_indices)."""
    found: dict[tuple[str, int], dict] = {}
    mine = run.predictions_csv("samples")
    full = predictions_csv(run.task, run.model, "samples", run.split)
    for path in sorted([full, *predictions_dir(run.task).glob(f"{run.split}-limit*/{mine.name}")]):
        if path.is_file() and path != mine:
            for key, row in read_samples(path).items():
                if key[0] in ids:
                    found.setdefault(key, row)
            print(f"[sc] --resume: the samples of {path} for this trial's rows", file=sys.stderr)
    return found


def run(run: Run, args: argparse.Namespace) -> tuple[Path, dict[str, str], int]:
    """Ask the server for the missing samples of every row; (the samples file, failed ids → why, samples kept)."""
    args.task, args.model = run.task, run.model  # the request loop names them
    config = run.config("predict", generate=False)
    name = config["eval_dataset"]
    records, attr = load_records(config, name)
    if run.limit is not None:  # the trial's rows, the same in every stage (core.records.trial_indices)
        group_col = run.spec.group_col if run.spec else None
        print(
            f"[sc] {describe_trial(records, run.limit, group_col)} of {name} (a trial run)", file=sys.stderr, flush=True
        )
        records = trial_records(records, run.limit, group_col)
    columns = {key: getattr(attr, key) for key in ("prompt", "query", "system") if getattr(attr, key, None)}
    try:
        rules = labels_task(args.labels) if args.labels else run.spec or find_task(run.task, run.data_dir)
    except InputError as err:
        raise RunError(str(err)) from None
    out_path = Path(args.out) if args.out else run.predictions_csv("samples")
    if out_path.exists() and not (args.resume or args.fresh):
        raise RunError(f"{out_path} exists: --resume keeps its samples and asks for the rest, --fresh starts over")
    rows = read_samples(out_path) if args.resume and out_path.exists() else {}
    if args.resume and not out_path.exists() and not args.out:
        rows = samples_of_other_trials(run, {str(r["id"]) for r in records})
    todo = {r["id"]: [s for s in range(args.samples) if (r["id"], s) not in rows] for r in records}
    todo = {record_id: samples for record_id, samples in todo.items() if samples}
    kept = len(rows)
    out = SampleFile(out_path, records, rows, args.flush_seconds, rules.group_col)
    if not todo:
        out.flush()
        run.record_origin(out_path, run.data_file(), len(records), f"self-consistency samples {run.model}")
        return out_path, {}, kept
    if args.wait:
        print(f"[sc] waiting up to {args.wait:g} s for http://{args.host}:{args.port}/v1/models", file=sys.stderr)
    if args.wait and not wait_for_server(args.host, args.port, args.wait):
        raise RunError(
            f"no server answered on http://{args.host}:{args.port}/v1/models within {args.wait} s "
            "(make serve ...; same API_KEY?)"
        )
    print(
        f"[sc] {len(todo)} ids, {sum(map(len, todo.values()))} samples to ask for"
        + (f" ({kept} kept from {out_path})" if kept else ""),
        file=sys.stderr,
        flush=True,
    )
    try:
        failed = asyncio.run(gather_samples(records, todo, out, rules, columns, args))
    finally:
        out.flush()
    run.record_origin(out_path, run.data_file(), len(records), f"self-consistency samples {run.model}")
    return out_path, failed, kept


def finished(out_path: Path, failed: dict[str, str], kept: int) -> int:
    """Say how the run ended: 0 when every sample is in the file, 1 (and which ids, why) when some are not."""
    if failed:
        reasons = Counter(failed.values())
        ids = ", ".join(list(failed)[:10]) + (", …" if len(failed) > 10 else "")
        print(
            f"[sc] {len(failed)} ids incomplete ({'; '.join(f'{n}× {why}' for why, n in reasons.items())}): {ids}"
            f"\n[sc] rerun with --resume to ask for them again",
            file=sys.stderr,
        )
        return 1
    print(f"[sc] samples complete → {out_path}" + (f" ({kept} kept from before)" if kept else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("python -m pipeline.self_consistency", __doc__)
    parser.add_argument("--samples", type=int, default=5, help="sampled answers per id (5)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--labels", help="candidate labels, comma-separated (default: the task's)")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--max-tokens", type=int, help="default: the served preset's max_new_tokens")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (4)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request (120)")
    parser.add_argument("--retries", type=int, default=3, help="retries per request after the first try (3)")
    parser.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds, doubling (1.0)")
    parser.add_argument("--wait", type=float, default=0.0, help="wait up to S seconds for the server to come up")
    parser.add_argument("--flush-seconds", type=float, default=2.0, help="rewrite the file at most this often")
    parser.add_argument("--resume", action="store_true", help="keep the samples already in the file")
    parser.add_argument("--fresh", action="store_true", help="overwrite an existing samples file")
    parser.add_argument("--out", help="default predictions/TASK/MODEL_samples.csv")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    if not os.environ.get("API_KEY"):
        print("error: API_KEY is not set (the server's key, sent as a bearer token)", file=sys.stderr)
        return 2
    try:
        return finished(*run(Run.from_args(args), args))
    except (RunError, AuthError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
