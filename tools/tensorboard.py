"""Serves the training logs of every Trainer run of a pipeline root in one TensorBoard, as the
codelab's tensorboard.sh did:

    python -m tools.tensorboard [--pipeline-root tfx_poets_output] [--port 6006]

Each Trainer execution writes its Keras TensorBoard logs to its own ModelRun folder,
`<pipeline-root>/artifacts/Trainer/model_run/<execution id>/`; each becomes one TensorBoard run,
`run-<execution id>`, so runs compare side by side. The FineTuner's (phase 2) become
`fine-tune-<execution id>`. TensorBoard is bound to 127.0.0.1; a taken
port is reported in one line and the next free one is used.

(Not a top-level `tensorboard.py`: in the repository root that file would shadow the
`tensorboard` package for every script run from there, TensorFlow's imports included.)
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from collections.abc import Mapping, Sequence

from pipeline.config import DEFAULT_PIPELINE_ROOT

PROG = "python -m tools.tensorboard"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6006
# How many ports after the requested one are tried before giving up.
PORT_ATTEMPTS = 100
EVENT_FILE_PREFIX = "events.out.tfevents."
RUN_NAME_PREFIX = "run-"
# (component id, run name prefix) of the components that write training logs.
TRAINING_COMPONENTS = (("Trainer", RUN_NAME_PREFIX), ("FineTuner", "fine-tune-"))
EXIT_USAGE = 2


class TensorBoardError(Exception):
    """Something the user can fix (no logs, no free port); one line on stderr, exit code 2."""


def model_run_root(pipeline_root: str, component: str = "Trainer") -> str:
    """Where a component's ModelRun artifacts live: one folder per execution."""
    return os.path.join(pipeline_root, "artifacts", component, "model_run")


def _has_event_files(folder: str) -> bool:
    return any(
        name.startswith(EVENT_FILE_PREFIX) for _, _, names in os.walk(folder) for name in names
    )


def _execution_order(name: str) -> tuple[int, str]:
    # Execution ids are integers; numeric order keeps run-10 after run-9.
    return (int(name), "") if name.isdigit() else (sys.maxsize, name)


def training_log_dirs(pipeline_root: str) -> dict[str, str]:
    """{run name: log folder} of every Trainer and FineTuner execution that wrote TensorBoard
    events, oldest first. A folder without event files (one that failed early) is left out."""
    found = []
    for component, prefix in TRAINING_COMPONENTS:
        root = model_run_root(pipeline_root, component)
        if not os.path.isdir(root):
            continue
        for name in os.listdir(root):
            folder = os.path.join(root, name)
            if os.path.isdir(folder) and _has_event_files(folder):
                found.append((_execution_order(name), f"{prefix}{name}", os.path.abspath(folder)))
    return {run: folder for _, run, folder in sorted(found)}


def logdir_spec(runs: Mapping[str, str]) -> str:
    """TensorBoard's `--logdir_spec`: `name:folder,name:folder`.

    TensorBoard splits the spec at commas, so a folder with a comma in its path cannot be named.
    """
    for folder in runs.values():
        if "," in folder:
            raise TensorBoardError(f"TensorBoard cannot serve a folder with a comma in its path: "
                                   f"{folder}; use a --pipeline-root without commas")
    return ",".join(f"{name}:{folder}" for name, folder in runs.items())


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could bind `host:port` now (tried by binding, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def choose_port(host: str, preferred: int, attempts: int = PORT_ATTEMPTS) -> int:
    """`preferred` if it is free, else the next free port after it."""
    for port in range(preferred, min(preferred + attempts, 65536)):
        if port_is_free(host, port):
            return port
    raise TensorBoardError(
        f"no free port in {preferred}..{preferred + attempts - 1} on {host}; pass --port"
    )


def _port(text: str) -> int:
    port = int(text) if text.isdigit() else 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Open TensorBoard on the training logs of every Trainer run of a tfx-poets pipeline\n"
            "root: loss and accuracy per epoch (train and validation), sample training images\n"
            "per class and the eval confusion matrix per epoch. Each Trainer execution is one\n"
            "run, named run-<execution id>. Serves on 127.0.0.1 only; Ctrl-C stops it."
        ),
        epilog=(
            "examples:\n"
            f"  {PROG}\n"
            f"  {PROG} --pipeline-root /tmp/out --port 6010\n"
            "If the port is taken, the next free port is used and the URL printed.\n"
            "exit status: 2 when the pipeline root has no training logs"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--pipeline-root", default=os.environ.get("TFX_POETS_PIPELINE_ROOT", DEFAULT_PIPELINE_ROOT),
        metavar="DIR",
        help="the runner's --pipeline-root (default: $TFX_POETS_PIPELINE_ROOT or "
        f"{DEFAULT_PIPELINE_ROOT})",
    )
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
                        help=f"port to try first (default: {DEFAULT_PORT})")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default: {DEFAULT_HOST}, this machine only)")
    return parser


def _serve(spec: str, host: str, port: int) -> int:
    """Runs TensorBoard in this process until it is interrupted; its exit status."""
    from tensorboard import program

    board = program.TensorBoard()
    board.configure(argv=[PROG, "--logdir_spec", spec, "--host", host, "--port", str(port)])
    # Prints one line itself if the port was taken in the meantime.
    return board.main()


def main(argv: Sequence[str] | None = None, serve=_serve) -> int:
    args = build_parser().parse_args(argv)
    try:
        runs = training_log_dirs(args.pipeline_root)
        if not runs:
            raise TensorBoardError(
                f"no training logs under {model_run_root(args.pipeline_root)}: run "
                "`python runner_local.py` first, or pass the run's --pipeline-root"
            )
        spec = logdir_spec(runs)
        port = choose_port(args.host, args.port)
    except TensorBoardError as error:
        print(f"tensorboard: {error}", file=sys.stderr)
        return EXIT_USAGE
    if port != args.port:
        print(f"tensorboard: port {args.port} is in use; using {port}", flush=True)
    print(f"tensorboard: {len(runs)} Trainer run(s): {', '.join(runs)}", flush=True)
    print(f"tensorboard: open http://{args.host}:{port}/ (Ctrl-C stops it)", flush=True)
    try:
        return serve(spec, args.host, port) or 0
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
