#!/usr/bin/env python3
"""Holds N connections that never finish their request head, and samples a process's RSS.

    slow_headers.py HOST:PORT PID [N=5000] [HEAD_BYTES=32768] [HOLD_SECONDS=20]

Each connection sends `GET /healthz HTTP/1.1`, a Host header and HEAD_BYTES of a header value,
never the blank line that ends the head. Prints the RSS of PID before, once every connection
is open, and each second after, with how many connections the server has closed.
"""
import socket
import sys
import time


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def closed(s):
    try:
        return s.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    pid = int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
    head = int(sys.argv[4]) if len(sys.argv) > 4 else 32768
    hold = int(sys.argv[5]) if len(sys.argv) > 5 else 20
    partial = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * head
    print(f"before: {rss_mib(pid):.1f} MiB")
    socks, t0 = [], time.time()
    for _ in range(n):
        s = socket.create_connection((host, int(port)))
        s.sendall(partial)
        s.setblocking(False)
        socks.append(s)
    print(f"{n} connections open in {time.time() - t0:.1f} s: {rss_mib(pid):.1f} MiB")
    gone = set()
    for second in range(1, hold + 1):
        time.sleep(1)
        for i, s in enumerate(socks):
            if i not in gone and closed(s):
                gone.add(i)
        print(f"+{second:>2} s: {rss_mib(pid):7.1f} MiB, {len(gone)} closed by the server")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
