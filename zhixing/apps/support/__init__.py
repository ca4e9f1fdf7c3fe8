"""The customer-service assistant (issue #20 §1): one encoder with intent, slot and sentiment heads,
out-of-scope detection, FAQ answers by dense retrieval, and a dialogue loop (docs/applications.md).

    from zhixing.apps.support import SupportModel, FaqIndex, SupportBot
    bot = SupportBot(SupportModel.load("runs/support"), FaqIndex.from_file("configs/support/faq.yaml"))
    bot.turn("c1", "wake me up at five am")   # {"intent", "confidence", "slots", "sentiment", "answer", ...}
"""

from zhixing.apps.support.data import OOS_INTENTS, parse_annotation, read_hwu64
from zhixing.apps.support.model import Labels, SupportModel
from zhixing.apps.support.train import SupportConfig, train_support

__all__ = [
    "SupportModel",
    "Labels",
    "SupportConfig",
    "train_support",
    "parse_annotation",
    "read_hwu64",
    "OOS_INTENTS",
]
