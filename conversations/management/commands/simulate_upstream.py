"""`manage.py simulate_upstream`: run the OpenAI-compatible upstream simulator in the foreground.

Lets the site be tried or benchmarked offline:

    python manage.py simulate_upstream --port 9999
    OPENAI_BASE_URL=http://127.0.0.1:9999/v1 OPENAI_API_KEY=x python manage.py runserver

By default every answer is a demo with a code block, a table and math, and the site's title requests get a
few words of the first prompt. `--fail` shows how errors look: 429 (rate limited, retried, then an error),
500 (a server error), midstream (an error after part of the answer) or stall (a pause mid-answer, then the
rest).
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from conversations.testing.upstream import DEMO_REPLY_TEXT, Fault, RecordedRequest, Reply, UpstreamSimulator

# --fail: what each answer does instead of succeeding (title requests still get their title).
FAILURES = {
    "429": {"fault": Fault.RATE_LIMIT, "retry_after": 1},
    "500": {"fault": Fault.SERVER_ERROR, "status": 500},
    "midstream": {"fault": Fault.MIDSTREAM_ERROR_OPENAI, "fault_after": 30},
    "stall": {"fault": Fault.STALL, "fault_after": 30, "stall_seconds": 12.0},
}


class Command(BaseCommand):
    help = "Serve a fake OpenAI-compatible /v1/chat/completions API on 127.0.0.1 until interrupted."

    # A fake upstream needs neither the database nor a checked project: it must start anywhere, fast.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=9999, help="Port (default 9999; 0 picks a free one).")
        parser.add_argument(
            "--text", default=None, help="The reply to every request (default: a demo answer)."
        )
        parser.add_argument(
            "--token-delay", type=float, default=0.02, help="Seconds between streamed tokens (default 0.02)."
        )
        parser.add_argument(
            "--ttft", type=float, default=0.2, help="Seconds before the first token (default 0.2)."
        )
        parser.add_argument(
            "--fail",
            choices=sorted(FAILURES),
            default=None,
            help="Make every answer fail this way, to see how errors look: 429, 500, midstream or stall.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        reply = Reply(
            text=options["text"] if options["text"] is not None else DEMO_REPLY_TEXT,
            ttft=options["ttft"],
            token_delay=options["token_delay"],
            **FAILURES.get(options["fail"] or "", {}),
        )
        sim = UpstreamSimulator(host=options["host"], port=options["port"], default=reply)
        sim.title_replies = True
        sim.on_request = self._log_request
        sim.start()
        self.stdout.write(self.style.SUCCESS(f"Upstream simulator listening on {sim.base_url}"))
        self.stdout.write(f"Point the site at it: OPENAI_BASE_URL={sim.base_url} OPENAI_API_KEY=x")
        if options["fail"]:
            self.stdout.write(f"Every answer fails: --fail {options['fail']}")
        self.stdout.write("Quit with CONTROL-C.")
        try:
            # Event().wait() with a timeout loop: a bare wait() would not wake up for KeyboardInterrupt.
            stop = threading.Event()
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            sim.stop()
            self.stdout.write("Upstream simulator stopped.")

    def _log_request(self, request: RecordedRequest) -> None:
        # Runs on the simulator's thread; one short line per request is enough to follow a benchmark.
        detail = ""
        if isinstance(request.json, dict):
            detail = f" model={request.json.get('model')} stream={bool(request.json.get('stream'))}"
        self.stdout.write(f"{request.method} {request.path}{detail}")
