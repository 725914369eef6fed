"""CPU of the record writer's SQL execution per call, on SQLite, without the rest of a node.

A whole call's writes (offer; answer, end and wrap-up as numbered updates, each with its
event row), for `--calls` calls in batches of `--batch` calls, executed by the writer's
`_execute` (ops, then no hooks) on the synchronous SQLite driver, each batch in a
transaction; the process's CPU time per call is printed. Run it once per tree to compare,
alternated, on a loaded host too (it is the CPU time of one process):

    for t in /tmp/base . . /tmp/base; do PYTHONPATH=$t .venv/bin/python bench/writer_cpu.py; done
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine

from core import writer
from core.models import Base
from core.ops import numbered
from cti import records


def call_ops(n: int) -> list[list[writer.Op]]:
    """One call's writes, per event."""
    call_id = f"c-{n}"
    now = dt.datetime.now(dt.UTC)
    offer = records.offer_ops(event_id=f"o-{n}", call_id=call_id, queue="default",
                              ani=f"+86139{n:08d}", dnis="800", customer_id=None,
                              tier="standard", ivr={"language": "zh"},
                              offered_at=time.time(), node_id="n1", integration="pbx")
    answer = [records.call_op(call_id, state="connected", agent_id=n % 1000 + 1),
              records.interaction_op(call_id, agent_id=n % 1000 + 1,
                                     agent_ids=[n % 1000 + 1], answered_at=now),
              records.event_op(f"a-{n}", call_id, "call.answered")]
    end = [records.call_op(call_id, state="wrap_up"),
           records.interaction_op(call_id, ended_at=now, end_cause="normal", talk_s=30.0),
           records.event_op(f"e-{n}", call_id, "call.ended")]
    done = [records.call_op(call_id, state="ended"),
            records.interaction_op(call_id, wrap_up_s=5.0, disposition="resolved"),
            records.event_op(f"w-{n}", call_id, "wrapup.done")]
    return [offer, numbered(answer, 2), numbered(end, 3), numbered(done, 4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=8, help="calls per batch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{Path(tmp) / 'w.db'}")
        Base.metadata.create_all(engine)
        calls = [call_ops(n) for n in range(args.calls)]
        spent = 0.0
        # A batch holds one step of `batch` calls, as events served together would.
        for step in range(4):
            for k in range(0, args.calls, args.batch):
                ops = [op for steps in calls[k:k + args.batch] for op in steps[step]]
                started = time.process_time()
                with engine.begin() as conn:
                    writer._execute(conn, ops)
                spent += time.process_time() - started
        engine.dispose()
    print(f"{writer.__file__}: writer CPU per call {spent * 1000 / args.calls:.3f} ms "
          f"({args.calls} calls, {args.batch} a batch)")


if __name__ == "__main__":
    main()
