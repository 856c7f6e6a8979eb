#!/usr/bin/env python3
"""Plays systemd's part of socket activation (sd_listen_fds(3)) for a mix of UDP and TCP
sockets, which systemd-socket-activate cannot pass at once (its --datagram applies to every
socket): binds the sockets as the caller (root, for ports below 1024), puts them at descriptors
3, 4, ... with LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES, optionally drops to an unprivileged
user, and execs the program in its place, so that LISTEN_PID is the program's own PID.

Sockets are non-blocking, as systemd creates them (SOCK_NONBLOCK); an IPv6 wildcard socket is
dual-stack, as with BindIPv6Only=both. Other entries make descriptors systemd would never pass,
to test how the program rejects them.

Usage: socket_activate.py [--user NAME] SOCKET... PROGRAM [ARGS...]
  SOCKET: udp:HOST:PORT[=NAME]  tcp:HOST:PORT[=NAME]  (HOST: 127.0.0.1, [::1], [::])
          file:PATH[=NAME]      a regular file opened read-only
          unix:PATH[=NAME]      a Unix-domain datagram socket bound to PATH
          tcp-connected:HOST:PORT[=NAME]  a TCP connection to a listener at HOST:PORT
  If any SOCKET has a NAME, LISTEN_FDNAMES names each, "tockd.socket" where none is given
  (systemd's default name is the socket unit's).
The PROGRAM is the first argument that is not an option or a SOCKET.
"""
import os
import pwd
import socket
import sys

KINDS = ("udp:", "tcp:", "file:", "unix:", "tcp-connected:")


def host_port(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def make(spec):
    kind, _, rest = spec.partition(":")
    if kind == "file":
        return os.open(rest, os.O_RDONLY)
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if os.path.exists(rest):
            os.unlink(rest)
        s.bind(rest)
        return s.detach()
    host, port = host_port(rest)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if kind == "tcp-connected":
        s = socket.create_connection((host, port))
        return s.detach()
    s = socket.socket(family, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    if kind == "tcp":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    if kind == "tcp":
        s.listen(64)
    s.setblocking(False)
    return s.detach()


def main(argv):
    user = None
    specs = []
    i = 0
    while i < len(argv):
        if argv[i] == "--user":
            user = argv[i + 1]
            i += 2
        elif argv[i].startswith(KINDS):
            specs.append(argv[i])
            i += 1
        else:
            break
    program = argv[i:]
    if not program:
        sys.exit(__doc__)
    fds, names = [], []
    for spec in specs:
        spec, _, name = spec.partition("=")
        try:
            fds.append(make(spec))
        except OSError as e:
            sys.exit(f"socket_activate.py: {spec}: {e}")
        names.append(name)
    # Move every descriptor above the target range first, so that placing one at 3 + i never
    # overwrites another that still waits to be placed.
    high = [os.dup2(fd, 100 + i) for i, fd in enumerate(fds)]
    for fd in fds:
        os.close(fd)
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i, inheritable=True)
        os.close(fd)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    env = dict(os.environ, LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(fds)))
    if any(names):
        env["LISTEN_FDNAMES"] = ":".join(n or "tockd.socket" for n in names)
    else:
        env.pop("LISTEN_FDNAMES", None)
    os.execve(program[0], program, env)


main(sys.argv[1:])
