"""The dialogue loop: per-conversation state, clarification, hand-off.

One turn:
1. analyse the utterance (SupportModel: calibrated intent, slots, sentiment);
2. merge its slots into the conversation's (later values win: "and at six?" updates the time);
3. decide an action, in this order:
   - `handoff`   the customer is angry (P(negative) >= anger_threshold), or a second out-of-scope turn
                 in a row, or the FAQ's own "talk to a person" entry matched;
   - `clarify`   out of scope for the first time (asks to rephrase), or the intent is uncertain: the two
                 best intents are within `margin` of each other (asks which one);
   - `ask_slot`  the chosen answer needs a slot the conversation does not have yet (asks for it);
   - `answer`    the FAQ entry, slots filled;
   - `dont_know` no FAQ entry clears the retrieval threshold.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from zhixing.apps.support.faq import FaqIndex
from zhixing.apps.support.model import SupportModel

HANDOFF_ENTRY = "human-agent"  # the FAQ entry whose match means "put me through to a person"


@dataclass
class Conversation:
    slots: dict[str, str] = field(default_factory=dict)
    oos_streak: int = 0  # consecutive out-of-scope turns
    pending: dict[str, Any] | None = None  # the answer waiting for a slot (ask_slot)
    turns: int = 0
    last_seen: float = field(default_factory=time.monotonic)


class SupportBot:
    """`turn(conversation_id, text)` -> {intent, confidence, slots, sentiment, answer, action, ...}.
    Conversations are kept in memory (at most `max_conversations`, least recently used dropped)."""

    def __init__(
        self,
        model: SupportModel,
        faq: FaqIndex,
        *,
        anger_threshold: float = 0.9,
        margin: float = 0.1,
        max_oos: int = 2,
        max_conversations: int = 10_000,
    ):
        self.model, self.faq = model, faq
        self.anger_threshold, self.margin, self.max_oos = anger_threshold, margin, max_oos
        self.max_conversations = max_conversations
        self.conversations: OrderedDict[str, Conversation] = OrderedDict()
        self.lock = threading.Lock()  # the HTTP server may call from several threads

    def state(self, conversation_id: str) -> Conversation:
        with self.lock:
            conv = self.conversations.pop(conversation_id, None) or Conversation()
            self.conversations[conversation_id] = conv
            while len(self.conversations) > self.max_conversations:
                self.conversations.popitem(last=False)
            return conv

    def reset(self, conversation_id: str) -> None:
        with self.lock:
            self.conversations.pop(conversation_id, None)

    def turn(self, conversation_id: str, text: str) -> dict[str, Any]:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text: expected a non-empty string")
        conv = self.state(conversation_id)
        conv.turns += 1
        conv.last_seen = time.monotonic()
        a = self.model.analyze(text.strip())
        conv.slots.update(a["slots"])
        out = {
            "conversation_id": conversation_id,
            "intent": a["intent"],
            "confidence": a["confidence"],
            "in_scope": a["in_scope"],
            "top": a["top"],
            "slots": dict(conv.slots),
            "turn_slots": a["slots"],
            "entities": a["entities"],
            "sentiment": a["sentiment"],
            "negative": a["negative"],
            "answer": None,
            "action": "answer",
            "faq_id": None,
            "faq_score": None,
        }
        if a["negative"] >= self.anger_threshold:
            return self._handoff(conv, out, "You sound frustrated — I am passing you to a colleague now.")
        if conv.pending is not None and a["slots"]:  # the reply to "which time?" completes the answer
            entry = conv.pending["entry"]
            filled, missing = entry.fill(conv.slots)
            if not missing:
                conv.pending = None
                return {
                    **out,
                    "intent": entry.intent or out["intent"],
                    "answer": filled,
                    "action": "answer",
                    "faq_id": entry.id,
                }
        entry, score = self.faq.answer(text, a["intent"] if a["in_scope"] else None)
        out["faq_score"] = score
        if entry is not None and entry.id == HANDOFF_ENTRY:
            return self._handoff(conv, out, entry.answer)
        if not a["in_scope"] and entry is None:
            conv.oos_streak += 1
            if conv.oos_streak >= self.max_oos:
                return self._handoff(conv, out, "I still cannot help with that; a colleague will take over.")
            return {
                **out,
                "action": "clarify",
                "answer": "Sorry, I did not understand that. Could you say it another way?",
            }
        conv.oos_streak = 0
        (i1, p1), (i2, p2) = a["top"][0], a["top"][1] if len(a["top"]) > 1 else ("", 0.0)
        if a["in_scope"] and p1 - p2 < self.margin and (entry is None or entry.intent not in (i1, i2)):
            return {
                **out,
                "action": "clarify",
                "options": [i1, i2],
                "answer": f"Do you mean {_say(i1)} or {_say(i2)}?",
            }
        if entry is None:
            return {**out, "action": "dont_know", "answer": "I don't know the answer to that yet."}
        filled, missing = entry.fill(conv.slots)
        out["faq_id"] = entry.id
        if missing:
            conv.pending = {"entry": entry}
            return {
                **out,
                "action": "ask_slot",
                "missing": missing,
                "answer": f"Which {missing[0].replace('_', ' ')}?",
            }
        conv.pending = None
        return {**out, "answer": filled}

    def _handoff(self, conv: Conversation, out: dict[str, Any], message: str) -> dict[str, Any]:
        conv.oos_streak, conv.pending = 0, None
        return {**out, "action": "handoff", "answer": message}


def _say(intent: str) -> str:
    """alarm_set -> "alarm set" (for a clarification question)."""
    return intent.replace("_", " ")


__all__ = ["SupportBot", "Conversation"]
