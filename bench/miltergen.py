"""Milter load generator: plays the MTA (Postfix) against any milter socket and measures it.

The bench harness's driver (also used by ``run_bench.py``): messages from files, folders, mbox
or tar archives (``mailwarden.files.sources.iter_sources``), or synthetic ones, are prepared before
the clock starts, then ``--concurrency`` worker threads each open milter connections the way
Postfix does (one per SMTP session, ``--per-connection`` messages each) and run every message
through the milter protocol (see ``miltersession.py``), for ``--messages`` N messages or
``--seconds`` T. Reports messages/s, latency percentiles, verdict counts, the replies actually
read per step, the milter process's CPU per message and RSS (``--pid`` or found from the socket)
and the generator's own CPU. Run with the repo venv:
``.venv/bin/python bench/miltergen.py --socket unix:/run/m.sock -c 4 -t 10 corpus.tar.gz``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from milterload import ClientInfo, PreparedMessage, prepare, synthetic_message
from milterproto import ProtocolError
from milterreport import WorkerResult, build_report, format_report
from miltersession import Outcome, Session, Tally
from procstat import ProcessReport, ProcessSampler, find_pid

from mailwarden.files.sources import iter_sources


@dataclass
class LoadConfig:
    socket: str
    concurrency: int = 4
    messages: int | None = None
    seconds: float | None = None
    per_connection: int = 1
    timeout: float = 30.0
    auth: str = "sender"
    tcp_nodelay: bool = False
    pid: int | None = None
    measure_process: bool = True
    settings_extra: dict[str, object] = field(default_factory=dict)


def load_messages(paths: Sequence[str], limit: int, synthetic_size: int, sender: str | None = None,
                  recipients: Sequence[str] = ()) -> list[PreparedMessage]:
    """Prepared messages from ``paths`` (at most ``limit``), or ``limit`` synthetic ones."""
    if not paths:
        return [prepare(f"synthetic#{i}", synthetic_message(i, synthetic_size), sender, recipients)
                for i in range(limit)]
    prepared = []
    for raw in iter_sources(paths):
        prepared.append(prepare(raw.source, raw.data, sender, recipients))
        if len(prepared) >= limit:
            break
    if not prepared:
        raise SystemExit(f"no messages found in {', '.join(paths)}")
    return prepared


class Dispatcher:
    """Hands out message indexes until the count or the deadline is reached (thread-safe)."""

    def __init__(self, total: int | None, deadline: float | None) -> None:
        self.total, self.deadline = total, deadline
        self.count = 0
        self.lock = threading.Lock()

    def next(self) -> int | None:
        with self.lock:
            if self.total is not None and self.count >= self.total:
                return None
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return None
            self.count += 1
            return self.count - 1


class Worker:
    """One thread's share of the load: sessions of ``per_connection`` messages."""

    def __init__(self, config: LoadConfig, messages: Sequence[PreparedMessage],
                 dispatcher: Dispatcher, run_id: int) -> None:
        self.config, self.messages, self.dispatcher = config, messages, dispatcher
        self.run_id = run_id
        self.result = WorkerResult()
        self.client = ClientInfo(auth=config.auth, tcp_nodelay=config.tcp_nodelay)
        self.negotiated: dict[str, object] | None = None

    def run(self) -> None:
        session: Session | None = None
        used = 0
        while (index := self.dispatcher.next()) is not None:
            msg = self.messages[index % len(self.messages)]
            start = time.perf_counter()
            try:
                if session is None:
                    session, used = self._open(self.result.tally), 0
                outcome = session.message(msg, f"{self.run_id:03X}{index:08X}")
                used += 1
            except (OSError, ProtocolError) as exc:
                outcome = Outcome("error", "-", error=type(exc).__name__)
                if session is not None:
                    session.abandon()
                session = None
            self.result.latencies.append(time.perf_counter() - start)
            self.result.outcomes.append(outcome)
            if session is not None and (used >= self.config.per_connection
                                        or session.conn_decision is not None):
                session.close()
                session = None
        if session is not None:
            session.close()

    def _open(self, tally: Tally) -> Session:
        session = Session(self.config.socket, self.config.timeout, self.client, tally)
        try:
            session.open()
        except BaseException:
            session.abandon()
            raise
        if self.negotiated is None and session.negotiated is not None:
            self.negotiated = session.negotiated.as_dict()
        return session


def _sampler(config: LoadConfig) -> ProcessSampler | None:
    if not config.measure_process:
        return None
    pid = config.pid or find_pid(config.socket)
    return ProcessSampler(pid).start() if pid else None


def run_load(config: LoadConfig, messages: Sequence[PreparedMessage]) -> dict[str, object]:
    """Drive the milter with ``messages`` (cycled) and return the report dict."""
    total = config.messages if config.messages is not None or config.seconds else len(messages)
    sampler = _sampler(config)
    loadavg_before = os.getloadavg()[0]
    cpu_before = time.process_time()
    start = time.perf_counter()
    deadline = time.monotonic() + config.seconds if config.seconds else None
    dispatcher = Dispatcher(total, deadline)
    run_id = random.randrange(0x1000)
    workers = [Worker(config, messages, dispatcher, run_id) for _ in range(config.concurrency)]
    threads = [threading.Thread(target=w.run, name=f"gen-{i}") for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    generator_cpu = time.process_time() - cpu_before
    proc: ProcessReport | None = sampler.stop() if sampler else None
    settings = {**asdict(config), "loaded_messages": len(messages),
                "loadavg": [round(loadavg_before, 2), round(os.getloadavg()[0], 2)]}
    settings.pop("settings_extra")
    settings.update(config.settings_extra)
    negotiated = next((w.negotiated for w in workers if w.negotiated), None)
    return build_report(settings, [w.result for w in workers], wall, proc, generator_cpu,
                        negotiated)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", help=".eml files, folders, mbox files or tar archives")
    p.add_argument("--socket", required=True, help="unix:/path, inet:PORT@HOST or inet:HOST:PORT")
    p.add_argument("-c", "--concurrency", type=int, default=4, help="parallel connections (4)")
    p.add_argument("-n", "--messages", type=int, help="messages to send (default: each once)")
    p.add_argument("-t", "--seconds", type=float, help="send for this long instead")
    p.add_argument("--per-connection", type=int, default=1, help="messages per connection (1)")
    p.add_argument("--limit", type=int, default=1000, help="messages loaded from paths (1000)")
    p.add_argument("--synthetic-size", type=int, default=4096,
                   help="size of the synthetic messages used when no path is given (4096)")
    p.add_argument("--sender", help="envelope sender (default: From: address)")
    p.add_argument("--rcpt", action="append", default=[], help="recipient (default: To:/Cc:)")
    p.add_argument("--auth", default="sender",
                   help="{auth_authen}: 'none', 'sender' (the envelope sender) or a login")
    p.add_argument("--warmup", type=int, default=0, help="unmeasured messages sent first")
    p.add_argument("--pid", type=int, help="milter process (default: found from the socket)")
    p.add_argument("--no-process", action="store_true", help="do not read the milter's /proc")
    p.add_argument("--timeout", type=float, default=30.0, help="per-reply timeout, seconds")
    p.add_argument("--tcp-nodelay", action="store_true",
                   help="disable Nagle on inet sockets (Postfix does not)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    messages = load_messages(args.paths, args.limit, args.synthetic_size, args.sender, args.rcpt)
    config = LoadConfig(socket=args.socket, concurrency=args.concurrency, messages=args.messages,
                        seconds=args.seconds, per_connection=args.per_connection,
                        timeout=args.timeout, auth=args.auth, pid=args.pid,
                        tcp_nodelay=args.tcp_nodelay,
                        measure_process=not args.no_process)
    if args.warmup:
        warm = LoadConfig(**{**asdict(config), "messages": args.warmup, "seconds": None,
                             "measure_process": False})
        run_load(warm, messages)
    report = run_load(config, messages)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
