"""Serving: the OpenAI-compatible HTTP server (`app.create_app`), its continuous-batching scheduler
(`batcher.Batcher`), the model registry and chat template seam (`models`), and the web UI (`static/`).
See docs/serving.md; `zhixing serve` starts it."""
