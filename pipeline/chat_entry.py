"""`llamafactory-cli chat`, with its answer thread finished before the interpreter exits: `python -m pipeline.chat_entry ARGS`.

LLaMA-Factory streams each answer from `model.generate` in a daemon thread (chat/hf_engine.py `_stream_chat`) that it
never joins. `generate` sends the streamer's stop signal before it returns, so on `exit` run_chat can return while that
thread is still alive; if the interpreter is finalizing when the thread takes the GIL back after a torch op, CPython 3.11
ends it with pthread_exit, whose unwind through torch's C++ frames calls std::terminate: "terminate called without an
active exception", SIGABRT after a complete answer. Joining the answer threads first closes that window.

End of input counts as `exit` (run_chat itself raises EOFError there); Ctrl-C leaves at once without finalizing.
"""

from __future__ import annotations

import os
import sys
import threading


def answer_threads() -> list[threading.Thread]:
    """hf_engine's `Thread(target=model.generate, daemon=True)`: Python names it "Thread-N (generate)"."""
    return [thread for thread in threading.enumerate() if thread.daemon and thread.name.endswith("(generate)")]


def main(argv: list[str]) -> int:
    from llamafactory.chat.chat_model import run_chat

    sys.argv = [sys.argv[0], *argv]  # run_chat reads its arguments from sys.argv, as after launcher's pop("chat")
    try:
        run_chat()
    except EOFError:
        print(flush=True)
    except KeyboardInterrupt:  # a generation may be running: waiting for it, or finalizing beside it, is worse
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    for thread in answer_threads():
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
