"""Applications built on the library (DESIGN.md §1, issue #20): what the framework is for.

Each application is a package `zhixing/apps/<name>/` with
- a Python API (classes and functions that take run directories / files and return plain data),
- `http.py` with `mount(app, path)`: adds its routes under `/apps/<name>/` to a `zhixing serve` app
  (FastAPI) and its web page at `/apps/<name>/` (a static HTML file next to it),
- a click group in `zhixing/cli/app_<name>.py`, reached as `zhixing app <name> ...`.

Applications sit above every library layer (they may use tasks, generation, serve, prompts, ...); no
library package imports them (tests/test_architecture.py).
"""
