# A stand-in for systemd's notify socket: prints each datagram as one JSON line
# {"t": <ms>, "fields": [...]} and closes the file descriptors that come with it, which is what
# releases systemd-notify's barrier (BARRIER=1 + a pipe fd), as the real manager does.
import array
import json
import os
import socket
import sys
import time

path = sys.argv[1]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
print(json.dumps({"listening": path}), flush=True)
while True:
    data, ancdata, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
            for fd in fds:
                os.close(fd)
    fields = [f for f in data.decode("utf-8", "replace").split("\n") if f]
    print(json.dumps({"t": time.time() * 1000, "fields": fields}), flush=True)
