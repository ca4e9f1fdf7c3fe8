"""Request bodies of the API, as pydantic models: OpenAI's field names, types and ranges.

Unknown fields are ignored (as vLLM does), so clients that send newer OpenAI fields keep working; fields
that would change the result and that zhixing does not implement (`echo`, `best_of` > n, tools) are
refused with a 400 that names them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    ignore_eos: bool = False  # vLLM's extension: keep generating past the end-of-sequence token

    def stop_list(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4:
            raise ValueError("stop: at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop: stop sequences must be non-empty")
        return stops


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[Any] | None = None


class EmbeddingRequest(_Body):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    pooling: Literal["mean", "cls"] = "mean"  # zhixing's extension


class TaskRequest(_Body):
    model: str
    input: str | list[str]


class QAItem(_Body):
    question: str
    context: str


class QARequest(_Body):
    model: str
    question: str | None = None
    context: str | None = None
    input: QAItem | list[QAItem] | None = None


class AttentionRequest(_Body):
    model: str
    text: str = Field(min_length=1)
    target: str | None = None  # decoder text of an encoder–decoder model
