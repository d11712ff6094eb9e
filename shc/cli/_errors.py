"""One error policy for the command-line tools: bad input is one line on stderr and exit 2, never a traceback."""
import sys

# What bad input raises: invalid values and types, and unreadable / missing / unwritable files.
USER_ERRORS = (ValueError, TypeError, OSError)


def run_cli(prog: str, fn, args) -> int:
    """Run ``fn(args)`` and turn user errors into ``PROG: error: ...`` (exit 2) and Ctrl-C into exit 130."""
    try:
        fn(args)
    except USER_ERRORS as exc:
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0
