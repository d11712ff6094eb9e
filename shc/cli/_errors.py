"""One error policy for the command-line tools: bad input is one line on stderr and exit 2, never a traceback."""
import os
import sys

# What bad input raises: invalid values and types, and unreadable / missing / unwritable files.
USER_ERRORS = (ValueError, TypeError, OSError)

# Modules an optional part of shc needs -> the pip extra that installs them (pyproject.toml's
# [project.optional-dependencies]); the engine-only install (`pip install .`) has none of them.
EXTRAS = {"torch": "train", "torchvision": "train", "PIL": "train", "simplejpeg": "train", "triton": "train",
          "numba": "centers", "onnx": "export", "onnxscript": "export", "onnxruntime": "export",
          "tensorboard": "tensorboard"}


class CommandFailed(Exception):
    """A failure that is not bad input but is still best told in one line (a lost distributed worker):
    ``PROG: error: MESSAGE`` and exit ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def check_output_path(path: str, option: str) -> None:
    """A one-line ValueError naming `option` unless a file can be written at `path` (its missing folders are
    created when it is written): checked before the work, so that a long job is not lost to a mistyped path, and
    told in words rather than as "[Errno 17] File exists" or "[Errno 21] Is a directory"."""
    if os.path.isdir(path):
        raise ValueError(f"{option} {path}: is a directory; give a file name")
    existing = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(existing):  # the nearest folder that exists already must be one, and writable
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{option} {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK):
        raise ValueError(f"{option} {path}: {existing} is not writable")


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line message for a module of an optional part that is not installed (None for any other
    missing module: a bug, whose traceback helps)."""
    if exc.name == "shc._engine":  # a source tree never built: shc._compiled says what to run
        return str(exc)
    module = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    return (f"this needs {module}, which is not installed: pip install \"shc[{extra}]\" (from a checkout: "
            f"pip install \".[{extra}]\")")


def parse_args(prog: str, build_parser, argv):
    """``build_parser().parse_args(argv)``, a missing extra told in one line (exit 2): parsers that list a
    module's choices import it."""
    try:
        return build_parser().parse_args(argv)
    except ModuleNotFoundError as exc:
        if not _told_missing_extra(prog, exc):
            raise
        raise SystemExit(2) from None


def _told_missing_extra(prog: str, exc: ModuleNotFoundError, context: str = "") -> bool:
    """Print the one line of a missing optional module; False (nothing printed) for any other module."""
    message = missing_extra(exc)
    if message is not None:
        print(f"{prog}: error: {context}{message}", file=sys.stderr)
    return message is not None


def run_cli(prog: str, fn, args, *, context: str = "", interrupted: str = "interrupted") -> int:
    """Run ``fn(args)`` and turn user errors into ``PROG: error: CONTEXTmessage`` (exit 2), CommandFailed into the
    same line with its code, a missing optional module into the extra to install (exit 2), Ctrl-C into
    ``PROG: INTERRUPTED`` (exit 130) and a closed output pipe into a quiet exit 1. An int that ``fn`` returns is
    the exit code (0 otherwise)."""
    try:
        result = fn(args)
    except BrokenPipeError:  # the reader went away (`shc-eval ... | head`): stop quietly, as other Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush into the pipe
        return 1
    except CommandFailed as exc:
        print(f"{prog}: error: {context}{exc}", file=sys.stderr)
        return exc.code
    except USER_ERRORS as exc:
        print(f"{prog}: error: {context}{' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if not _told_missing_extra(prog, exc, context):
            raise  # not an optional part: a bug
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
