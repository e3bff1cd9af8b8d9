"""Benchmarks of the pipeline and of its parts, run from the repo root as modules:

    .venv/bin/python -m bench.<script> -h

Each script is a module with a `main`; what several of them share lives in modules of its own
that no script runs: `common` (the environment TensorFlow reads, the machine, RSS and timing),
`photos` (the pipeline's photo listing and split), `recipe_data` (the files recipe_features
writes for recipe_cv), and compare's parts (`compare_runs`, `run_facts`, `compare_report`,
`replica`). Scripts import each other only through those.
"""
