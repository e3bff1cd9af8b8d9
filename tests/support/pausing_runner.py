"""runner_local.py that stops inside one component, for a test to SIGKILL it there.

`python -m tests.support.pausing_runner --pause-in NODE <runner_local flags>` runs the pipeline
as runner_local.py does, but when NODE's executor has written its first output file (or has
returned, for a quick one), it prints `PAUSED-IN NODE writing|written` to stderr and waits,
before ML Metadata records the step as finished. A kill then lands at a known point of the step,
with its outputs half or fully written and unpublished, which timing alone cannot guarantee.
"""

from __future__ import annotations

import os
import sys
import threading
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

PAUSE_MARKER = "PAUSED-IN"


def _has_output_file(output_dict) -> bool:
    for artifacts in output_dict.values():
        for artifact in artifacts:
            for _, _, files in os.walk(artifact.uri):
                if files:
                    return True
    return False


def pause_in(node_id: str) -> None:
    """Patches TFX's launcher so that `node_id`'s executor pauses as described above."""
    from tfx.orchestration.portable import launcher

    run_executor = launcher.Launcher._run_executor

    def pausing_run_executor(self, execution_info):
        if self._pipeline_node.node_info.id != node_id:
            return run_executor(self, execution_info)
        worker = threading.Thread(
            target=run_executor, args=(self, execution_info), daemon=True
        )
        worker.start()
        while worker.is_alive() and not _has_output_file(execution_info.output_dict):
            time.sleep(0.01)
        stage = "writing" if worker.is_alive() else "written"
        print(f"{PAUSE_MARKER} {node_id} {stage}", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)

    launcher.Launcher._run_executor = pausing_run_executor


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "--pause-in":
        print("usage: python -m tests.support.pausing_runner --pause-in NODE [flags]",
              file=sys.stderr)
        return 2
    import runner_local
    from pipeline import cli

    pause_in(argv[1])
    return cli.main(argv[2:], run_pipeline=runner_local.run, prog="runner_local.py")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
