#!/usr/bin/env python3
"""Opens N keep-alive connections to a gateway, sends one request on each, reads its
answer, and then holds every connection open and idle until it is killed (or HOLD
seconds pass). The helper of benches/idle_memory.sh; see benches/README.md ("Idle
connections").

    idle_client.py HOST PORT N --token=TOKEN [--tls] [--post [--body-size BYTES]] [--concurrency C]
                   [--hold SECONDS]

--post sends a POST with a body (4 bytes unless --body-size) instead of a GET: on tollgate
that request is handed to hyper, so the idle connection is hyper's.

Prints `READY <ok> <failed> <seconds>` once every connection has had its answer, then
holds them. Exit status (after HOLD) 0 when every request was answered 200, 1 otherwise.
"""

import argparse
import asyncio
import ssl
import sys
import time


async def one(host, port, ssl_ctx, request, held, sem):
    """Connects, sends `request`, reads the answer (Content-Length or chunked), keeps the
    connection in `held`; returns the status code (0 on failure)."""
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, port, ssl=ssl_ctx, server_hostname="localhost" if ssl_ctx else None
                ),
                timeout=10,
            )
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            if "content-length" in headers:
                await asyncio.wait_for(
                    reader.readexactly(int(headers["content-length"])), timeout=10
                )
            elif headers.get("transfer-encoding", "").lower().endswith("chunked"):
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        # Trailers (none expected) end with an empty line.
                        while (await reader.readuntil(b"\r\n")) != b"\r\n":
                            pass
                        break
                    await reader.readexactly(size + 2)
            held.append(writer)
            return status
        except Exception as e:  # noqa: BLE001 (a bench: any failure is counted)
            print(f"connection failed: {e!r}", file=sys.stderr)
            return 0


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("n", type=int)
    # An option, given as --token=VALUE: a token may begin with "-".
    p.add_argument("--token", required=True)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--hold", type=float, default=600)
    p.add_argument("--path", default="/idle")
    p.add_argument("--post", action="store_true")
    p.add_argument("--body-size", type=int, default=4)
    a = p.parse_args()

    ssl_ctx = None
    if a.tls:
        # The bench's self-signed certificate: encryption without verification.
        ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ssl_ctx.check_hostname = False
        ssl_ctx.verify_mode = ssl.CERT_NONE
        ssl_ctx.set_alpn_protocols(["http/1.1"])
    method, body = ("POST", "p" * a.body_size) if a.post else ("GET", "")
    length = f"Content-Length: {len(body)}\r\n" if a.post else ""
    request = (
        f"{method} {a.path} HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {a.token}\r\nAccept: */*\r\n{length}\r\n{body}"
    ).encode()

    held = []
    sem = asyncio.Semaphore(a.concurrency)
    started = time.monotonic()
    statuses = await asyncio.gather(
        *(one(a.host, a.port, ssl_ctx, request, held, sem) for _ in range(a.n))
    )
    ok = sum(1 for s in statuses if s == 200)
    failed = a.n - ok
    print(f"READY {ok} {failed} {time.monotonic() - started:.1f}", flush=True)

    # Hold until the script stops us (SIGTERM) or the time is up.
    await asyncio.sleep(a.hold)
    for w in held:
        w.close()
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    asyncio.run(main())
