"""Request bodies shared by routes, as the OpenAPI document shows them: what a route takes
is what its schema says (a body that does not fit gets 422 ``invalid_request``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Reason(BaseModel):
    """Why a person acknowledged, resolved, approved or rejected something (stored with it)."""

    model_config = ConfigDict(extra="allow")

    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S",
                        description="Free text; at least one character that is not a space")


__all__ = ["Reason"]
