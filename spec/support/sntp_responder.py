#!/usr/bin/python3
"""A misbehaving-on-request SNTP server for the specs and the benchmark.

Runs as its own process (the client under test blocks in poll) under Debian's
/usr/bin/python3:

    /usr/bin/python3 spec/support/sntp_responder.py [address]

prints "PORT <n>" and serves <address>:<n> (default 127.0.0.1; "::1" for IPv6).
Its receive stamp (T2) is the kernel's arrival stamp (SO_TIMESTAMPNS) and its
transmit stamp (T3) is read after the packet is built, right before sendto, so the
responder adds no asymmetry of its own to the exchange: errors measured against it
belong to the client. Times are integer nanoseconds throughout.

It is controlled over the same UDP socket: a datagram "CTL <command>" gets one reply.
  CTL set k=v k=v ...   reset to a well-behaved server, then apply the settings below
  CTL stats             "OK requests=N offset=S t2=HEX t3=HEX" about the last request
  CTL quit              exit
Settings: offset (s added to the server clock), hold (s between receive and transmit
stamps), leap, version, mode, stratum, poll, precision, refid (4 chars), root_delay,
root_dispersion (s), kod (a code: stratum 0 reply), spoof (first|only: a reply with a
wrong origin and a 999 s error, before the genuine one or instead of it), short (reply
length), zero_transmit (1), receive_after_transmit (1), silent (1), echo (1: send the
request back), era (1: place the server clock so that the receive stamp falls hold/2
before the 2036 era rollover and the transmit stamp after it).
"""
import os
import socket
import struct
import sys
import time
from decimal import Decimal

NTP_UNIX_OFFSET = 2208988800
ERA_ROLLOVER_UNIX_NS = ((1 << 32) - NTP_UNIX_OFFSET) * 10**9
IDLE_EXIT = 120  # seconds without any datagram: the test that owned us is gone
# Python's socket module does not export it; 35 is Linux's SO_TIMESTAMPNS (the old,
# native-width variant: struct timespec in the control message), equal to its SCM type.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else None)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS

DEFAULTS = dict(offset=0, hold=0, leap=0, version=4, mode=4, stratum=2, poll=4,
                precision=-20, refid=None, root_delay=0, root_dispersion=2**-16,
                kod=None, spoof=None, short=None, zero_transmit=False,
                receive_after_transmit=False, silent=False, echo=False, era=False)
TEXT = {"refid", "kod", "spoof"}
FLAGS = {"zero_transmit", "receive_after_transmit", "silent", "echo", "era"}


def ns(seconds):
    return int(Decimal(str(seconds)) * 10**9)


def ntp(unix_ns):
    """Unix nanoseconds -> 8-byte NTP timestamp (the era is dropped, as on the wire)."""
    sec, rem = divmod(unix_ns, 10**9)
    return struct.pack(">II", (sec + NTP_UNIX_OFFSET) & 0xFFFFFFFF, (rem << 32) // 10**9)


def short_format(seconds):
    return struct.pack(">I", int(round(float(seconds) * 65536)) & 0xFFFFFFFF)


def head(origin, t2_ns, c, kod):
    """The first 40 bytes; the transmit stamp is appended at the last moment."""
    first = (c["leap"] << 6) | (c["version"] << 3) | c["mode"]
    refid = (kod or c["refid"] or "\x7f\x00\x00\x01").encode("latin-1")
    refid = (refid + b"\0\0\0\0")[:4]
    return (struct.pack(">BBbb", first, 0 if kod else c["stratum"], c["poll"], c["precision"])
            + short_format(c["root_delay"]) + short_format(c["root_dispersion"]) + refid
            + ntp(t2_ns)  # reference timestamp: when we last "set" our clock
            + origin + ntp(t2_ns))


def apply(args):
    c = dict(DEFAULTS)
    for item in args.split():
        k, _, v = item.partition("=")
        if k in TEXT:
            c[k] = v
        elif k in FLAGS:
            c[k] = v == "1"
        elif k in c:
            c[k] = Decimal(v) if k in ("offset", "hold", "root_delay", "root_dispersion") else int(v)
        else:
            raise ValueError("unknown setting " + k)
    return c


def main():
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((address, 0))
    if SCM_TIMESTAMPNS is not None:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.settimeout(IDLE_EXIT)
    print("PORT", sock.getsockname()[1], flush=True)

    cfg = dict(DEFAULTS)
    stats = dict(requests=0, offset=Decimal(0), t2="", t3="")
    while True:
        try:
            data, anc, _, peer = sock.recvmsg(2048, socket.CMSG_SPACE(16))
        except socket.timeout:
            break
        arrival = None
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(cdata) >= 16:
                sec, nsec = struct.unpack("qq", cdata[:16])
                arrival = sec * 10**9 + nsec
        if arrival is None:
            arrival = time.time_ns()

        if data.startswith(b"CTL "):
            verb, _, rest = data[4:].decode("latin-1").partition(" ")
            if verb == "set":
                try:
                    cfg = apply(rest)
                except (ValueError, ArithmeticError) as e:
                    sock.sendto(("ERR %s" % e).encode(), peer)
                    continue
                stats["requests"] = 0
                sock.sendto(b"OK", peer)
            elif verb == "stats":
                sock.sendto(("OK requests=%d offset=%.9f t2=%s t3=%s" % (
                    stats["requests"], stats["offset"], stats["t2"], stats["t3"])).encode(), peer)
            elif verb == "quit":
                sock.sendto(b"OK", peer)
                break
            else:
                sock.sendto(b"ERR unknown command", peer)
            continue
        if len(data) < 48:
            continue

        c = cfg
        stats["requests"] += 1
        if c["silent"]:
            continue
        hold_ns = ns(c["hold"])
        offset_ns = ns(c["offset"])
        if c["era"]:
            offset_ns = ERA_ROLLOVER_UNIX_NS - hold_ns // 2 - arrival
        stats["offset"] = Decimal(offset_ns) / 10**9
        if c["echo"]:
            sock.sendto(data, peer)
            continue
        t2 = arrival + offset_ns
        request_transmit = data[40:48]
        if hold_ns > 0:
            while time.time_ns() < arrival + hold_ns:
                pass  # busy: a sleep would overshoot
        if c["spoof"]:
            wrong = os.urandom(8)
            sock.sendto(head(wrong, t2 + 999 * 10**9, c, None)
                        + ntp(time.time_ns() + offset_ns + 999 * 10**9), peer)
        t2_stamp = t2
        if c["receive_after_transmit"]:
            t2_stamp = t2 + hold_ns + 10**9 // 2
        genuine = head(request_transmit, t2_stamp, c, c["kod"])
        # T3 as late as possible: whatever runs after it lengthens the return leg only.
        t3 = time.time_ns() + offset_ns
        if c["receive_after_transmit"]:
            t3 = t2
        packet = genuine + (b"\0" * 8 if c["zero_transmit"] else ntp(t3))
        if c["short"] is not None:
            packet = packet[:c["short"]]
        if c["spoof"] != "only":
            sock.sendto(packet, peer)
        stats["t2"] = "%08x" % (((t2_stamp // 10**9) + NTP_UNIX_OFFSET) & 0xFFFFFFFF)
        stats["t3"] = "%08x" % (((t3 // 10**9) + NTP_UNIX_OFFSET) & 0xFFFFFFFF)
    sock.close()


if __name__ == "__main__":
    main()
