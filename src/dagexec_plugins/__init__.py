"""dagexec's built-in plugins: one module per stage, each replaceable and blockable with ``-p no:NAME``."""
