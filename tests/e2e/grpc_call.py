"""One unary gRPC call with raw bytes: the transport of :mod:`e2e.cri`.

Run by the system Python (Debian's python3-grpcio), never imported by the tests:
``grpc_call.py SOCKET /package.Service/Method TIMEOUT`` sends standard input as the
request to the unix socket and writes the response to standard output. A failed call
prints ``CODE: details`` on standard error and exits 1.
"""

import sys

import grpc  # type: ignore[import-untyped]  # the system Python's, without stubs


def main() -> int:
    socket, method, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with grpc.insecure_channel("unix://" + socket) as channel:
        call = channel.unary_unary(method)  # no (de)serializers: bytes in, bytes out
        try:
            response = call(sys.stdin.buffer.read(), timeout=timeout)
        except grpc.RpcError as error:
            sys.stderr.write(f"{error.code().name}: {error.details()}\n")
            return 1
    sys.stdout.buffer.write(response)
    return 0


if __name__ == "__main__":
    sys.exit(main())
