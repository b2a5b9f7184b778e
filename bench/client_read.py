"""CPU that conversations/llm/client.py spends reading streamed answers, per answer (see bench/README.md).

Starts the upstream simulator in a process of its own (bench/load_upstream.py: 200 tokens, 200 ms to the
first, 10 ms apart) and reads answers from it in this process through `open_stream`, exactly as the engine
does, but with nothing else around it: no Django request, no websocket, no database. For each N it measures
the CPU time of this process (time.process_time: user + system, every thread) across N answers and divides
by N. CPU rather than wall time, so another load on the machine changes little; runs are still repeated and
the median reported.

Variants, measured interleaved in one run (round r runs every variant once, in an order rotated by r):
  after   the current transport (conversations/llm/transport.py), reads unpaced
  paced   the same with a pacer: `open_stream(..., pacer=FramePacer(--pace))` (one read per frame)
  before  transport.py as of git revision --before (loaded from git into a module of its own), unpaced

    .venv/bin/python bench/client_read.py                    # N = 1 (10 in a row), 50, 200; after, paced
    .venv/bin/python bench/client_read.py --before 1869e89 --variants before,after,paced --rounds 5
    .venv/bin/python bench/client_read.py --sizes 50 --rounds 9 --pace 0.04
    .venv/bin/python bench/client_read.py --profile 200 --variants paced   # cProfile one round, top functions
    .venv/bin/python bench/client_read.py --sizes 50 --rounds 20 --variants paced   # run under py-spy
    .venv/bin/python bench/client_read.py --tls --sizes 1,50   # HTTPS, through a TLS front in its own process

`--tls` puts a TLS front (this script with `--tls-front`, a process of its own: it terminates TLS and pipes the
bytes to the simulator) in front of the simulator, with a throw-away self-signed certificate, as providers
are reached over HTTPS.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime
import importlib.util
import os
import pstats
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from load import TOKENS, Upstream  # noqa: E402  (the load bench's simulator: same answers)
from load_upstream import bench_text  # noqa: E402

from conversations.llm import (  # noqa: E402
    ChatMessage,
    ChatRequest,
    ClientConfig,
    FramePacer,
    TextDelta,
    open_stream,
)
from conversations.llm.client import POOL_LIMITS, USER_AGENT  # noqa: E402
from conversations.llm.routes import Route  # noqa: E402
from conversations.llm.transport import AsyncioTransport  # noqa: E402

SEQUENTIAL = 10  # answers one after another for N = 1
CONFIG = ClientConfig(max_retries=0, user_secret="bench")  # noqa: S106 - hashes the user id only


def transport_at(revision: str) -> type[httpx.AsyncBaseTransport]:
    """AsyncioTransport from conversations/llm/transport.py as it was at `revision` (a module of its own)."""
    source = subprocess.run(  # noqa: S603 - fixed git command, revision from the command line
        ["git", "show", f"{revision}:conversations/llm/transport.py"],  # noqa: S607
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "transport_before.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("transport_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AsyncioTransport


class Variant:
    def __init__(self, name: str, transport: type[httpx.AsyncBaseTransport], pace: float | None) -> None:
        self.name = name
        self.transport = transport
        self.pace = pace
        self.verify: ssl.SSLContext | bool = True

    def client(self) -> httpx.AsyncClient:
        """What client.shared_client() builds, on this variant's transport."""
        return httpx.AsyncClient(
            transport=self.transport(verify=self.verify, limits=POOL_LIMITS),  # type: ignore[call-arg]
            limits=POOL_LIMITS,
            timeout=httpx.Timeout(60.0, connect=5.0),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )

    def pacer(self) -> FramePacer | None:
        return None if self.pace is None else FramePacer(self.pace)


async def one_answer(
    route: Route, n: int, expected: str, client: httpx.AsyncClient, pacer: FramePacer | None
) -> None:
    request = ChatRequest([ChatMessage("user", f"answer {n}")], user_id=1)
    parts = []
    async with open_stream(request, [route], CONFIG, client=client, pacer=pacer) as stream:
        async for event in stream:
            if type(event) is TextDelta:
                parts.append(event.text)
    if "".join(parts) != expected or not stream.result.complete:
        raise SystemExit(f"answer {n} was wrong or incomplete")


async def round_of(route: Route, n: int, expected: str, variant: Variant) -> float:
    """CPU seconds per answer for one round of N answers (a new client: its connections open again; building
    it, mostly loading the system's CA certificates, is left out: a process does it once)."""
    async with variant.client() as client:
        cpu = time.process_time()
        if n == 1:
            for i in range(SEQUENTIAL):
                await one_answer(route, i, expected, client, variant.pacer())
            answers = SEQUENTIAL
        else:
            await asyncio.gather(*(one_answer(route, i, expected, client, variant.pacer()) for i in range(n)))
            answers = n
        cpu = time.process_time() - cpu
    return cpu / answers


async def main_async(
    args: argparse.Namespace, upstream: Upstream, base_url: str, variants: list[Variant]
) -> None:
    route = Route(provider_name="Bench", kind="openai", base_url=base_url, model_id="gpt-4o")
    expected = bench_text(TOKENS)
    for variant in variants:  # warm up: imports, first connections
        async with variant.client() as client:
            await asyncio.gather(
                *(one_answer(route, i, expected, client, variant.pacer()) for i in range(10))
            )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        per_answer = await round_of(route, args.profile, expected, variants[0])
        profiler.disable()
        print(f"{variants[0].name}, N = {args.profile}: {per_answer * 1000:.1f} ms CPU per answer (cProfile)")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
        return
    names = [v.name for v in variants]
    over = "HTTPS" if args.tls else "HTTP"
    print(
        f"ms of CPU per {TOKENS}-token answer over {over}, median of {args.rounds} interleaved rounds (every round)"
    )
    print(f"{'N':>5}  " + "  ".join(f"{name:>8}" for name in names))
    for n in args.sizes:
        results: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.rounds):
            for variant in variants[r % len(variants) :] + variants[: r % len(variants)]:
                results[variant.name].append(await round_of(route, n, expected, variant) * 1000)
                upstream.timings()  # the simulator records every request; asking clears them
        medians = "  ".join(f"{statistics.median(results[name]):>8.1f}" for name in names)
        rounds = "; ".join(f"{name} " + " ".join(f"{x:.1f}" for x in results[name]) for name in names)
        print(f"{n:>5}  {medians}    ({rounds})", flush=True)


# --- HTTPS ------------------------------------------------------------------------------------------------------


def self_signed(folder: Path) -> tuple[str, str]:
    """(cert.pem, key.pem) of a throw-away certificate for 127.0.0.1."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client_read bench")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(folder / "cert.pem"), str(folder / "key.pem")


async def tls_front(cert: str, key: str, upstream_port: int) -> None:
    """Terminate TLS on a free port (printed on stdout) and pipe the bytes to the simulator; run until killed."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main() -> None:
    if sys.argv[1:2] == ["--tls-front"]:
        asyncio.run(tls_front(sys.argv[2], sys.argv[3], int(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,50,200", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variants", default="after,paced", type=lambda s: s.split(","))
    parser.add_argument("--pace", type=float, default=0.04, help="frame interval of the paced variant (s)")
    parser.add_argument("--before", metavar="REV", help="git revision whose transport.py is 'before'")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile the first variant")
    parser.add_argument("--tls", action="store_true", help="over HTTPS, through a TLS front process")
    args = parser.parse_args()
    before: Callable[[], type[httpx.AsyncBaseTransport]] = lambda: transport_at(args.before)  # noqa: E731
    factories = {
        "after": lambda: Variant("after", AsyncioTransport, None),
        "paced": lambda: Variant("paced", AsyncioTransport, args.pace),
        "before": lambda: Variant("before", before(), None),
    }
    if "before" in args.variants and not args.before:
        parser.error("the 'before' variant needs --before REV")
    variants = [factories[name]() for name in args.variants]
    upstream = Upstream(Path(os.devnull))
    front = None
    try:
        base_url = upstream.base_url
        if args.tls:
            cert, key = self_signed(Path(tempfile.mkdtemp()))
            port = httpx.URL(base_url).port
            front = subprocess.Popen(  # noqa: S603 - this script, fixed arguments
                [sys.executable, __file__, "--tls-front", cert, key, str(port)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert front.stdout is not None
            base_url = f"https://127.0.0.1:{int(front.stdout.readline())}/v1"
            for variant in variants:
                variant.verify = ssl.create_default_context(cafile=cert)
        asyncio.run(main_async(args, upstream, base_url, variants))
    finally:
        if front is not None:
            front.kill()
        upstream.close()


if __name__ == "__main__":
    main()
