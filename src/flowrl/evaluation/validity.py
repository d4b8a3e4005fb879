"""What every evaluated method returns per prompt, and the one validity check applied to it."""

from __future__ import annotations

from dataclasses import dataclass

from flowrl.errors import FlowRLError


@dataclass(frozen=True)
class Candidate:
    """One method's flow for one prompt: its encoded text, and its API graph when the method already has it."""

    text: str
    graph: dict | None = None


def checked_graph(candidate: Candidate) -> dict | None:
    """The candidate's API graph if it decodes and passes `validate_graph`, else None (an invalid flow)."""
    from flowrl.comfy.validate import validate_graph
    from flowrl.encoding.codec import decode_flow

    graph = candidate.graph
    if graph is None:
        try:
            graph = decode_flow(candidate.text)
        except FlowRLError:
            return None
    return None if validate_graph(graph) else graph
