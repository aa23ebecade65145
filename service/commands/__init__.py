"""Running commands: one path for every command, solo or grouped.

    handle(runner, request)              service/commands/handle.py   validate, run, surface a recorded rejection
      runner.run(request)                runner.py                    SoloRunner | GroupCommitter (group_commit.py)
        execute_batch(store, requests)   runner.py                    the two round trips:
          connection.read(...)             1. what the batch decides on (heads, snapshots, records, claims)
          plan(...) per command            plan.py: replay, or decide and compute everything to write
          connection.write(writes)         2. one statement: version checks, events, rows, records, claims

A stream that moved or a key taken between the two round trips makes the write fail whole; the batch's
commands are then decided again (bounded, with jitter).
"""
