"""One error policy for the command-line tools: bad input is one line on stderr and exit 2, never a traceback."""
import os
import sys

# What bad input raises: invalid values and types, and unreadable / missing / unwritable files.
USER_ERRORS = (ValueError, TypeError, OSError)


def run_cli(prog: str, fn, args) -> int:
    """Run ``fn(args)`` and turn user errors into ``PROG: error: ...`` (exit 2), Ctrl-C into exit 130 and a closed
    output pipe into a quiet exit 1."""
    try:
        fn(args)
    except BrokenPipeError:  # the reader went away (`shc-eval ... | head`): stop quietly, as other Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush into the pipe
        return 1
    except USER_ERRORS as exc:
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0
