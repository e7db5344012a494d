"""Serve the fake standalone: python -m tests.standins.fakegcp --port N (prints its URL, serves until killed)."""

from __future__ import annotations

import argparse
import sys

from tests.standins.fakegcp import FakeGcp


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.standins.fakegcp", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--operation-polls", type=int, default=None,
                        help="operations.get polls until an operation is done (default 1)")
    parser.add_argument("--realism", action="store_true",
                        help="as slow and strict as Google Cloud: timed operations, API enablement, propagation "
                        "delays and permissions (see realism.py)")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="real seconds per second of Google Cloud time with --realism (e.g. 0.02)")
    args = parser.parse_args(argv)
    fake = FakeGcp(realism=args.realism, time_scale=args.time_scale)
    if args.operation_polls is not None:
        fake.operation_polls = args.operation_polls
    server = fake.bind(args.port, args.host)
    print(fake.url, flush=True)
    for name, url in sorted(fake.endpoints.items()):
        print("  %s: %s" % (name, url), file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
