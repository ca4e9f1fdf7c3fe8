"""Visualisation: attention maps of any zhixing model, as data (for the web UI) and as PNG."""

from zhixing.viz.attention import attention_maps, plot_attention

__all__ = ["attention_maps", "plot_attention"]
