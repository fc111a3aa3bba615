"""The front door: one `llmcomp` command whose subcommands are the stages' own CLIs (see `llmcomp --help`).

Nothing imports this package; it imports the stages lazily, so `llmcomp vote` never loads torch.
"""
